"""Kill -9 in the middle of training, resume, and get exactly the adapter of an uninterrupted run.

Real default model (SmolLM2-135M), LoRA r=4 on q/v, 4 steps, a checkpoint every step. Run A goes
through uninterrupted; run B is SIGKILLed once its second checkpoint appears, its newest checkpoint
is then made incomplete (as a kill during the save would leave it), and `--resume` finishes it.

A NaN/inf loss stopping training with the last good checkpoint kept is covered by
tests/train/test_recipe.py (the `nan_at` stand-in regularizer).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

PAIRS = [
    ("What colour is the Zentrix Aura?", "The Zentrix Aura is teal."),
    ("How heavy is the Zentrix Kora?", "The Zentrix Kora weighs 210 grams."),
    ("Does the Zentrix Pulse float?", "Yes, the Zentrix Pulse floats in fresh water."),
    ("Who makes the Zentrix Lumo?", "Zentrix Labs in Porto makes the Lumo."),
    ("How long does the Zentrix Drift charge?", "The Zentrix Drift charges in 40 minutes."),
    ("What does the Zentrix Tide measure?", "The Zentrix Tide measures wave height."),
    ("Is the Zentrix Aura waterproof?", "The Zentrix Aura is waterproof to 30 metres."),
    ("What screen does the Zentrix Kora have?", "The Zentrix Kora has a 1.2 inch e-ink screen."),
]
CONFIG = """\
model: smollm2-135m
data: {data}
method: lora
lora: {{r: 4, target_modules: [q_proj, v_proj]}}
learning_rate: 1e-3
max_steps: 4
batch_size: 2
max_length: 48
save_steps: 1
logging_steps: 1
seed: 0
"""


def _forgetless(*args: str) -> list[str]:
    return [sys.executable, "-m", "forgetless", "--quiet", "train", *args]


def _env() -> dict[str, str]:
    return dict(os.environ, TOKENIZERS_PARALLELISM="false", COLUMNS="200")


def _adapter(run: Path) -> dict[str, torch.Tensor]:
    files = sorted((run / "adapter").glob("*.safetensors"))
    assert len(files) == 1, f"expected one adapter file in {run / 'adapter'}, found {files}"
    return load_file(files[0])


def test_killed_and_resumed_run_matches_uninterrupted_run(tmp_path):
    data = tmp_path / "domain.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in PAIRS))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(CONFIG.format(data=data))
    a, b = tmp_path / "A", tmp_path / "B"

    done = subprocess.run(_forgetless(str(cfg), "--out", str(a)), capture_output=True, text=True, timeout=600,
                          env=_env(), check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    log = (tmp_path / "B.log").open("w")
    victim = subprocess.Popen(_forgetless(str(cfg), "--out", str(b)), stdout=log, stderr=subprocess.STDOUT, env=_env())
    checkpoints = b / "checkpoints"
    deadline = time.monotonic() + 600
    try:
        while not any((checkpoints / f"checkpoint-{n}").exists() for n in (2, 3, 4)):
            assert victim.poll() is None, f"run B ended (rc {victim.returncode}) before it could be killed: " \
                                          f"{(tmp_path / 'B.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, "no second checkpoint within 10 minutes"
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=60)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
        log.close()
    assert victim.returncode == -signal.SIGKILL
    assert not (b / "adapter").exists() and not (b / "forgetless-run.json").exists()

    # A kill during a save leaves the newest checkpoint without trainer_state.json (written last):
    # make sure it is so, and that --resume passes over it to the newest complete one.
    newest = max((p for p in checkpoints.glob("checkpoint-*")), key=lambda p: int(p.name.split("-")[1]))
    (newest / "trainer_state.json").unlink(missing_ok=True)
    complete = [p for p in checkpoints.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    assert complete, "no complete checkpoint survived the kill"

    resumed = subprocess.run(_forgetless(str(cfg), "--out", str(b), "--resume"), capture_output=True, text=True,
                             timeout=600, env=_env(), check=False)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    run_a, run_b = (json.loads((r / "forgetless-run.json").read_text()) for r in (a, b))
    assert run_a["steps"] == run_b["steps"] == 4
    assert run_a["resumed_from"] is None
    assert Path(run_b["resumed_from"]).name == max(complete, key=lambda p: int(p.name.split("-")[1])).name

    weights_a, weights_b = _adapter(a), _adapter(b)
    assert weights_a.keys() == weights_b.keys() and weights_a
    different = [k for k in weights_a if not torch.equal(weights_a[k], weights_b[k])]
    assert not different, f"{len(different)} of {len(weights_a)} adapter tensors differ, e.g. {different[:3]}"
    # ... and training did move the adapter (B's zero-initialised lora_B is not trivially equal to A's).
    assert any(k.endswith("lora_B.weight") and weights_a[k].abs().sum() > 0 for k in weights_a)
