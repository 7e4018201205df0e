"""Plumbing of benchmarks/bench_train.py on a tiny model: every variant timed, both Fisher estimates equal.

No timing is asserted here: speed targets live in the benchmark's own output (BENCHMARKS.md).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_train.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_train", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2-layer random Llama with the real smollm2 tokenizer (chat template for the training data)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from forgetless.models.loading import resolve

    tokenizer = AutoTokenizer.from_pretrained(resolve("smollm2-135m")[0])
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id)
    folder = tmp_path_factory.mktemp("tiny")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_quick_run_times_every_variant_and_the_fisher_estimates_agree(bench, tiny, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = bench.main(["--model", tiny, "--quick", "--rounds", "2", "--batch", "2", "--length", "32",
                       "--skip", "memory", "--skip", "monitor", "--json", str(out)])
    numbers = json.loads(out.read_text())
    assert code == 0
    assert set(numbers["steps"]) == set(bench.VARIANTS)
    for variant, row in numbers["steps"].items():
        assert len(row["seconds"]) == 2 and row["median_s"] > 0
        assert row["ratio"] > 0 and (row["ratio"] == 1.0 or variant in bench.TARGETS)
        assert row["cpu_ratio"] > 0  # on CPU, the ratio of CPU seconds as well
    fisher = numbers["fisher"]
    assert fisher["same"] and fisher["examples"] == 4 and fisher["auto_is"] == "loop"  # CPU
    for how in ("auto", "vmap"):
        assert fisher[how]["max_diff_over_tensor_max"] <= bench.FISHER_RTOL and fisher[how]["speedup"] > 0
    printed = capsys.readouterr().out
    assert "lora+kl" in printed and "values the same" in printed


def test_one_variant_per_process_reports_its_peak_memory(bench, tiny, capsys):
    assert bench.main(["--only", "lora+ewc", "--model", tiny, "--batch", "2", "--length", "32",
                       "--memory-steps", "1"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["variant"] == "lora+ewc" and row["peak_mb"] > 0 and row["peak_mb_after_load"] > 0


def test_fisher_agreement_flags_a_wrong_estimate(bench):
    slow = {"w": torch.tensor([1.0, 2.0, 0.0])}
    assert bench.fisher_agreement({"w": slow["w"] + 1e-6}, slow)["same"]
    assert not bench.fisher_agreement({"w": slow["w"] * 1.01}, slow)["same"]
