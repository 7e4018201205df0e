"""EWC, L2-SP and precomputed KL under FSDP2: two gloo processes on the CPU against one process.

`fsdp_worker.py` shards a tiny Llama with torch's own `fully_shard` (one group per decoder layer plus
the root), with the penalties set up on the whole model before sharding, as the Trainer does, and
each process training on its half of the batch. Over 3 SGD steps the loss, each penalty, the
gradient norm and every gradient tensor must equal the one-process run on the whole batch to 1e-4
(relative). The KL is a difference of nearly equal log-probabilities: the float32 rounding of logits
computed 2 rows at a time instead of 4 leaves up to 9e-5 of it (measured), so it gets 1e-3. A
penalty summed on one shard only, counted twice, or averaged by FSDP's gradient reduction would be
off by 50-100%. Each process holds half of the Fisher, as DTensor shards.

The Trainer under `accelerate launch` with an FSDP2 config is not run here: accelerate starts no
FSDP without a GPU (docs/scale-out.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("torch.distributed.fsdp")


@pytest.fixture(scope="module", params=["full", "lora"])
def runs(request, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("fsdp") / f"{request.param}.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(ROOT / "tests" / "train" / "fsdp_worker.py"), request.param, str(out)]
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])  # this checkout, even if installed elsewhere
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_sharded_steps_equal_one_process(runs):
    assert len(runs["one"]) == len(runs["sharded"]) == 3
    for one, sharded in zip(runs["one"], runs["sharded"]):
        for key in ("task", "ewc", "l2sp", "grad_norm"):
            assert sharded[key] == pytest.approx(one[key], rel=1e-4, abs=1e-9), key
        assert sharded["kl"] == pytest.approx(one["kl"], rel=1e-3, abs=1e-9)
    assert runs["one"][-1]["ewc"] > 0.1 and runs["one"][-1]["l2sp"] > 0.01 and runs["one"][-1]["kl"] > 1e-4
    assert max(runs["grad_gap"]) < 1e-4


def test_each_process_holds_half_of_the_fisher(runs):
    assert runs["fisher_is_dtensor"]
    assert runs["fisher_elements"]["held"] * 2 == runs["fisher_elements"]["whole"]
