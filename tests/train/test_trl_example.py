"""examples/trl_sft_ewc.py: TRL's SFTTrainer + LoRA + EWC (+ KL) + the forgetting monitor, a few steps.

The tiny random Llama (real tokenizer and chat template) keeps it to seconds; what is checked is
the plumbing a user's script relies on: each penalty reaches the loss and the log, the monitor
measures, the adapter is saved.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "trl_sft_ewc.py"


def load_example():
    spec = importlib.util.spec_from_file_location("trl_sft_ewc", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("trl") / "run"
    result = load_example().main(["--model", str(tiny_model_dir), "--out", str(out), "--max-steps", "3",
                                  "--batch-size", "2", "--learning-rate", "1e-2", "--kl", "0.1",
                                  "--monitor-every", "2", "--probes", "4"])
    return out, result


def test_penalties_reach_the_loss_and_the_log(run):
    _, result = run
    steps = [row for row in result["log"] if "loss" in row]
    assert [row["step"] for row in steps] == [1, 2, 3]
    first, later = steps[0], steps[1:]
    # Step 1 runs at the base weights (LoRA's B starts at zero): nothing moved, nothing to penalise.
    assert first["penalty_ewc"] == 0 and first["penalty_kl"] == pytest.approx(0, abs=1e-6)
    for row in later:
        assert row["penalty_ewc"] > 0 and row["penalty_kl"] > 0
        parts = row["loss_task"] + row["penalty_ewc"] + row["penalty_kl"]
        assert row["loss"] == pytest.approx(parts, rel=1e-4)


def test_monitor_measures_a_curve(run):
    _, result = run
    points = result["monitor"]["points"]
    assert [p["step"] for p in points] == [0, 2]
    assert points[0]["kl"] == 0 and points[1]["kl"] > 0  # the adapter moved the model away from the base


def test_adapter_and_logs_are_written(run):
    out, _ = run
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA"
    assert (out / "adapter" / "adapter_model.safetensors").stat().st_size > 0
    assert (out / "train_log.jsonl").read_text().count("\n") >= 4
    assert json.loads((out / "monitor.json").read_text())["points"]
