"""`forgetless train --plan` against measured peaks (BENCHMARKS.md, "Memory plan").

Each case runs `forgetless train` for two optimizer steps in a fresh process, on examples that all
fill `max_length`, with the monitor off. The measured peak is the most tensor memory torch held at
once, from the profiler's allocation and free events in order (what a GPU run reads from
`torch.cuda.max_memory_allocated`); the process's peak resident memory above its size after the
imports is printed beside it, as it also counts the C allocator's caches and loading buffers.
Models: SmolLM2-135M (built in), and random-weight models of SmolLM2-360M's and Llama 3.2 1B's shape
(written once under --models, with SmolLM2's tokenizer: about 6 GB, kept for reruns). Full fine-tuning
of the 1B shape does not fit this machine kind's 24 GB, so it is planned only. Run folders are deleted
as soon as each case is measured (a 1B run writes gigabytes of checkpoints).

    python benchmarks/bench_plan.py [--models DIR] [--only 135m]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SHAPES = {  # hidden, MLP, blocks, heads, key/value heads, vocabulary (tied embeddings)
    "360m": dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15,
                 num_key_value_heads=5, vocab_size=49152),
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256),
}
EWC = {"name": "ewc", "weight": 1.0, "fisher_max_examples": 8, "fisher_cache": False}
CASES = [  # (model, label, settings)
    ("135m", "LoRA", {}), ("135m", "LoRA + EWC", {"regularizers": [EWC]}),
    ("135m", "full", {"method": "full"}), ("135m", "full + EWC", {"method": "full", "regularizers": [EWC]}),
    ("135m", "full + EWC + KL (reference model)", {"method": "full", "regularizers": [EWC, {"name": "kl"}]}),
    ("360m", "LoRA", {}), ("360m", "LoRA + EWC", {"regularizers": [EWC]}),
    ("360m", "full", {"method": "full"}), ("360m", "full + EWC", {"method": "full", "regularizers": [EWC]}),
    ("1b", "LoRA", {}), ("1b", "LoRA + EWC", {"regularizers": [EWC]}),
]
CHILD = """
import json, sys
from torch.profiler import ProfilerActivity, profile
from forgetless.train.config import TrainConfig
from forgetless.train.recipe import train

def kib(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field + ":"))

base = kib("VmRSS")
with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
    train(TrainConfig(**json.loads(sys.argv[1])), progress=False)
live = peak = 0  # torch's own allocations and frees, in order: the most tensor memory held at once
for event in sorted(prof.events(), key=lambda e: e.time_range.start):
    live += event.self_cpu_memory_usage
    peak = max(peak, live)
print(json.dumps({"measured": peak, "resident": (kib("VmHWM") - base) * 1024}))
"""


def random_model(shape: str, folder: Path) -> Path:
    """A random-weight model of that shape with SmolLM2's tokenizer, saved once."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from forgetless.models.loading import resolve

    path = folder / shape
    if (path / "config.json").exists():
        return path
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(tie_word_embeddings=True, max_position_embeddings=2048, **SHAPES[shape]))
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(resolve("smollm2-135m")[0]).save_pretrained(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "forgetless-plan-models")
    parser.add_argument("--only", default=None, help="one model: 135m, 360m or 1b")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-plan-"))  # run folders: a 1B run writes gigabytes
    try:
        _measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _measure(args: argparse.Namespace, work: Path) -> None:
    from forgetless.train.config import TrainConfig
    from forgetless.train.plan import GIB, plan_memory

    data = work / "long.jsonl"  # every example longer than max_length
    data.write_text("".join(json.dumps({"text": f"Example {i}: " + "the quick brown fox jumps over the lazy dog " * 40})
                            + "\n" for i in range(32)))
    rows = []
    for shape, label, extra in CASES:
        if args.only and shape != args.only:
            continue
        model = "smollm2-135m" if shape == "135m" else str(random_model(shape, args.models))
        settings = {"model": model, "data": str(data), "max_steps": 2, "batch_size": 8, "max_length": 96,
                    "out": str(work / f"{shape}-{len(rows)}"), "save_steps": 1000, "logging_steps": 1,
                    "lora": {"dropout": 0.0}, **extra}
        planned = plan_memory(TrainConfig(**settings)).peak
        done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(settings)], capture_output=True, text=True,
                              env={**os.environ, "FORGETLESS_QUIET": "1"}, check=False)
        shutil.rmtree(settings["out"], ignore_errors=True)
        if done.returncode != 0:
            print(f"{shape} {label}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        got = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append({"model": shape, "case": label, "planned": planned, **got})
        print(f"| {shape} | {label} | {planned / GIB:.2f} | {got['measured'] / GIB:.2f} | "
              f"{planned / got['measured']:.2f} | {got['resident'] / GIB:.2f} |", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
