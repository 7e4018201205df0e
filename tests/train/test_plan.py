"""`forgetless train --plan`: the counts behind each line are exact (the same model the run builds, on the meta
device), and the plan reads no weights. How close the totals come to measured peaks is a benchmark
(benchmarks/bench_plan.py, BENCHMARKS.md), not a test."""

from __future__ import annotations

import shutil
import sys

import pytest
import torch
import yaml

from forgetless.train.config import TrainConfig
from forgetless.train.plan import FISHER_BYTES, plan_memory
from forgetless.train.recipe import apply_method
from forgetless.train.regularizers import EWC


def _config(model, **extra) -> TrainConfig:
    return TrainConfig(model=str(model), data="builtin:domain/train.jsonl", max_length=32, batch_size=2, **extra)


def _lines(plan) -> dict[str, int]:
    return {x.item: x.bytes for part in (plan.held, *plan.moments.values()) for x in part}


@pytest.mark.parametrize("method", ["lora", "full"])
def test_counts_equal_the_model_the_run_builds(tiny_model_dir, method):
    """Weights, gradients, optimizer state and the Fisher, against the real model with its real Fisher."""
    from transformers import AutoModelForCausalLM

    config = _config(tiny_model_dir, method=method, regularizers=[{"name": "ewc"}])
    lines = _lines(plan_memory(config, torch.device("cpu")))
    model = apply_method(config, AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32))
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    trained = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    ids = torch.arange(1, 9).unsqueeze(0)
    ewc = EWC({"lambda": 1.0, "fisher_cache": False, "fisher_max_examples": 1})
    ewc.setup(model, reference_batches=[{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}])
    fisher = sum(f.numel() * 4 for f in ewc.fisher.values())
    assert (lines["weights"], lines["gradients"], lines["optimizer state"], lines["Fisher"]) == \
        (weights, trained, 2 * trained, fisher)
    assert lines["Fisher sums"] == fisher // 4 * (FISHER_BYTES + 4)  # one example's gradient at a time on a CPU
    assert ("anchors" in lines) == (method == "full")


@pytest.mark.parametrize("regularizers, method, has_reference", [
    ([{"name": "kl"}], "full", True),
    ([{"name": "kl", "top_k": 128}], "full", False),  # precomputed targets: no copy of the model
    ([{"name": "kl"}], "lora", False),  # the base is the model with its adapters off
])
def test_a_reference_model_is_planned_only_where_kl_keeps_one(tiny_model_dir, regularizers, method, has_reference):
    lines = _lines(plan_memory(_config(tiny_model_dir, method=method, regularizers=regularizers)))
    assert ("reference model" in lines) == has_reference
    if has_reference:
        assert lines["reference model"] == lines["weights"]


def test_a_plan_that_does_not_fit_names_the_fixes(tiny_model_dir):
    plan = plan_memory(_config(tiny_model_dir, method="full", regularizers=[{"name": "ewc"}, {"name": "kl"}]))
    plan.capacity = plan.peak - 1
    text = plan.render()
    assert plan.fits is False and "it does not fit" in text
    for fix in ("fisher_dtype: bfloat16", "top_k: 128", "gradient_checkpointing: true", "method: lora", "FSDP2"):
        assert fix in text


def test_cli_plans_without_weights(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """A folder with its config and no weight file: the plan needs nothing else."""
    from forgetless.cli.main import main

    folder = tmp_path / "no-weights"
    shutil.copytree(tiny_model_dir, folder, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"model": str(folder), "data": "builtin:domain/train.jsonl", "method": "full",
                                      "regularizers": [{"name": "ewc"}]}))
    monkeypatch.setattr(sys, "argv", ["forgetless", "train", str(config), "--plan"])
    with pytest.raises(SystemExit) as done:
        main()
    out = capsys.readouterr().out
    assert (done.value.code or 0) == 0
    assert "Fisher" in out and "anchors" in out and "peak" in out and not list(tmp_path.glob("**/runs"))


def test_a_term_turned_off_by_its_own_weight_is_not_planned(tiny_model_dir):
    """`lambda: 0` turns EWC off as `weight: 0` does: the plan reads the regularizer's own resolved config."""
    lines = _lines(plan_memory(_config(tiny_model_dir, method="full", regularizers=[{"name": "ewc", "lambda": 0}])))
    assert "Fisher" not in lines and "anchors" not in lines
