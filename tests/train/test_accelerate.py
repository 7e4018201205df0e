"""Scale-out: `forgetless train` under `accelerate launch`, two gloo processes on the CPU, LoRA + EWC + KL.

Same effective batch: 2 processes x batch 2 against 1 process x batch 4. Under DDP every process
draws batches of 2 from one shared, seeded shuffle and process i keeps batches i, i+2, ...; so at
each step the two processes together see exactly the 4 examples the single process sees. The
task loss is normalized by the label count of both processes (transformers'
`average_tokens_across_devices`) and gradients are averaged. EWC depends only on the weights, and
each process computes the same Fisher from the same reference data. The KL term is a mean over the
positions of each process's own batch, averaged over processes: a mean of two means, not the mean
over all positions, so it agrees only to ~1% when the shards hold different numbers of response
tokens (measured: 0.5%), which moves the later steps' loss and gradient norm by ~1e-5 (float32
rounding alone: ~1e-7). Hence rtol 1e-4 on loss, task loss, EWC and gradient norm over 4 steps,
2e-2 on KL; a mismatch in sharding, penalty scaling or a process's Fisher would be off by far more
(another batch changes step 1's loss in the 3rd digit; a doubled penalty, by 100%).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from forgetless.train import train, validate_config

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings(model: Path) -> dict:
    """float32: under bf16 autocast (a CPU with AMX) batches of 2 and of 4 round differently."""
    return {"model": str(model), "data": "builtin:domain/train.jsonl", "method": "lora", "dtype": "float32",
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0}, "max_length": 64, "max_steps": 4, "logging_steps": 1,
            "learning_rate": 1e-2, "warmup_ratio": 0.0, "lr_scheduler": "constant", "save_steps": 100,
            "regularizers": [{"name": "ewc", "weight": 100.0}, {"name": "kl", "weight": 1000.0}]}


def launch_two_processes(config: Path, out: Path) -> subprocess.CompletedProcess:
    """`accelerate launch` with no visible GPU: two processes on gloo (the CI runner has no GPU either)."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])  # this checkout, even if installed elsewhere
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": path}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()),
               "-m", "forgetless", "-q", "train", str(config), "--out", str(out), "--json"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)


def steps(history: list[dict]) -> list[dict]:
    return [row for row in history if "loss" in row]


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump({**settings(tiny_model_dir), "batch_size": 2}))
    done = launch_two_processes(config, folder / "ddp")
    assert done.returncode == 0, done.stderr[-3000:]
    single = train(validate_config({**settings(tiny_model_dir), "batch_size": 4, "out": str(folder / "single")}),
                   progress=False)
    ddp = [json.loads(line) for line in (folder / "ddp" / "train_log.jsonl").read_text().splitlines()]
    return {"single": steps(single.log_history), "ddp": steps(ddp), "stdout": done.stdout, "dir": folder / "ddp"}


def test_two_processes_train_like_one_with_the_same_effective_batch(runs):
    single, ddp = runs["single"], runs["ddp"]
    assert [r["step"] for r in ddp] == [r["step"] for r in single] == [1, 2, 3, 4]
    for one, two in zip(single, ddp):
        for key in ("loss", "loss_task", "penalty_ewc", "grad_norm"):
            assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), (one["step"], key)
        # the KL is a mean over each process's own scored tokens, and DDP averages the two means: equal to the
        # one-process mean only when both halves score as many tokens (2.2% apart at step 4 of this data order)
        assert two["penalty_kl"] == pytest.approx(one["penalty_kl"], rel=5e-2, abs=1e-6), one["step"]
    # the penalties are really in play: zero at the base weights (step 1), a sizeable share of the loss after
    assert ddp[0]["penalty_ewc"] == 0 and ddp[0]["penalty_kl"] == 0
    assert all(r["penalty_ewc"] > 1 and r["penalty_kl"] > 1e-3 for r in ddp[1:])


def test_only_the_main_process_writes_and_reports(runs):
    run_dir = runs["dir"]
    assert sorted(p.name for p in run_dir.iterdir()) == ["adapter", "checkpoints", "config.yaml",
                                                          "forgetless-run.json", "train_log.jsonl"]
    assert (run_dir / "adapter" / "adapter_model.safetensors").exists()
    assert json.loads((run_dir / "forgetless-run.json").read_text())["steps"] == 4
    assert runs["stdout"].count('"run_dir"') == 1  # one JSON summary, not one per process


def test_a_time_budget_stops_every_process_at_one_count(tiny_model_dir, tmp_path):
    """Each process times its own steps; the slowest one's time decides for all, or they would wait for
    each other at the end. A budget too short for one step: both stop after exactly one."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**settings(tiny_model_dir), "batch_size": 2, "max_steps": 6,
                                      "max_seconds": 1e-9}))
    done = launch_two_processes(config, tmp_path / "ddp")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "ddp" / "forgetless-run.json").read_text())["steps"] == 1
    assert yaml.safe_load((tmp_path / "ddp" / "config.yaml").read_text())["max_steps"] == 1
