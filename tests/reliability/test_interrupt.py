"""Ctrl-C during training: the step finishes, a checkpoint is saved, the command exits 130 with one
line, and `--resume` reaches exactly the weights of an uninterrupted run.

Plumbing, so a tiny random Llama (fast steps) with a constant learning rate; the real-model
SIGKILL test is test_kill_resume.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

CONFIG = """\
model: {model}
data: {data}
method: full
learning_rate: 1e-3
lr_scheduler: constant
warmup_ratio: 0
max_steps: 300
batch_size: 2
max_length: 64
save_steps: 40
logging_steps: 10
seed: 3
"""


def _train(*args: str) -> list[str]:
    return [sys.executable, "-m", "forgetless", "--quiet", "train", *args]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model" / "model.safetensors")


def test_ctrl_c_saves_a_checkpoint_and_resume_matches_uninterrupted_run(tmp_path, tiny_model_dir):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Code {i}?", "response": f"It is {i * 7}."}) + "\n"
                            for i in range(10)))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(CONFIG.format(model=tiny_model_dir, data=data))
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", COLUMNS="200")
    a, b = tmp_path / "A", tmp_path / "B"

    done = subprocess.run(_train(str(cfg), "--out", str(a)), capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    victim = subprocess.Popen(_train(str(cfg), "--out", str(b)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env)
    deadline = time.monotonic() + 300
    while not (b / "checkpoints" / "checkpoint-40" / "trainer_state.json").exists():
        assert victim.poll() is None, f"run ended before Ctrl-C: {victim.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "no checkpoint within 5 minutes"
        time.sleep(0.01)
    victim.send_signal(signal.SIGINT)
    stdout, stderr = victim.communicate(timeout=300)

    assert victim.returncode == 130, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr  # the risk warnings come before training
    assert lines[0].startswith("interrupted:") and "interrupted at step" in lines[0] and "--resume" in lines[0]
    step = int(lines[0].split("interrupted at step ")[1].split()[0])
    assert 40 <= step < 300
    saved = b / "checkpoints" / f"checkpoint-{step}"
    assert (saved / "trainer_state.json").is_file(), f"no checkpoint at the interrupted step {step}"
    assert json.loads((saved / "trainer_state.json").read_text())["global_step"] == step
    assert not (b / "model").exists() and not (b / "forgetless-run.json").exists()  # not a finished run

    resumed = subprocess.run(_train(str(cfg), "--out", str(b), "--resume"), capture_output=True, text=True,
                             env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert Path(json.loads((b / "forgetless-run.json").read_text())["resumed_from"]).name == saved.name
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "resumed weights differ from the uninterrupted run"
