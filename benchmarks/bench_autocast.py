"""bf16 autocast vs float32 training through `forgetless.train`, alternating, on smollm2-135m.

Run: python benchmarks/bench_autocast.py [--steps 12] [--rounds 2] [--model M]
`dtype: auto` autocasts to bf16 where bf16 is native (a CUDA GPU with bf16, a CPU with AMX tiles);
elsewhere both arms are float32 and the ratio is ~1. Prints each run's Trainer runtime and, per
method, the float32 / auto ratio (above 1: autocast is faster).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import yaml

from forgetless.models.device import native_bf16, pick_device
from forgetless.train import load_config, train

METHODS = {
    "lora": {"method": "lora", "learning_rate": 3e-4,
             "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}},
    "full": {"method": "full", "learning_rate": 3e-4},
}


def runtime(folder: Path, config: dict) -> float:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump({**config, "out": str(folder / "run")}))
    train(load_config(path), progress=False)
    log = [json.loads(line) for line in (folder / "run" / "train_log.jsonl").read_text().splitlines()]
    return next(row["train_runtime"] for row in log if "train_runtime" in row)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="smollm2-135m", help="a built-in name or a Hugging Face folder")
    args = parser.parse_args()
    print(f"native bf16 here: {native_bf16(pick_device(None))}")
    shared = {"model": args.model, "data": "builtin:domain/train.jsonl", "max_steps": args.steps, "batch_size": 8,
              "max_length": 96, "seed": 0, "save_steps": 10_000, "logging_steps": 1, "warmup_ratio": 0.05}
    seconds: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            for method, keys in METHODS.items():
                for dtype in ("float32", "auto"):
                    folder = Path(tmp) / f"{method}-{dtype}-{rnd}"
                    folder.mkdir()
                    s = runtime(folder, {**shared, **keys, "dtype": dtype})
                    seconds.setdefault((method, dtype), []).append(s)
                    print(f"{method:5s} {dtype:8s} round {rnd}: {s:.1f} s for {args.steps} steps", flush=True)
    for method in METHODS:
        fp32, auto = (statistics.median(seconds[(method, d)]) for d in ("float32", "auto"))
        print(f"{method}: float32 {fp32:.1f} s, auto {auto:.1f} s -> {fp32 / auto:.2f}x")


if __name__ == "__main__":
    main()
