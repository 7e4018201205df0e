"""The CPU speed-ups behind the study's time, each measured side by side in one process, alternating.

Run: python benchmarks/bench_cpu_paths.py [--steps 6] [--rounds 2] [--model M]
- training through `forgetless.train` (8 x 96 tokens): `attention: sdpa` vs `auto` (eager on a CPU up to
  256 tokens), and LoRA dropout 0.05 vs 0 (the study's and `run`'s LoRA);
- evaluation prefill: the template's shared prefix computed once per batch vs for every row
  (`forgetless.eval.decode.MIN_SHARED_PREFIX` raised out of reach), on 60 general questions, with the
  replies compared.
Prints each arm's time, the ratio (above 1: the second arm is faster), and whether replies agree.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench_autocast import runtime

import forgetless.eval.decode as decode
from forgetless.eval.generate import greedy_generate
from forgetless.eval.prompts import render_prompt
from forgetless.models import load_model
from forgetless.suites import load_suite

LORA = {"method": "lora", "learning_rate": 3e-4, "lora": {"r": 16, "alpha": 32, "target_modules": "all-linear"}}
ARMS = {
    "attention (full)": ({"method": "full", "learning_rate": 3e-4, "attention": "sdpa"},
                         {"method": "full", "learning_rate": 3e-4, "attention": "auto"}),
    "LoRA dropout 0.05 -> 0": ({**LORA, "lora": {**LORA["lora"], "dropout": 0.05}},
                               {**LORA, "lora": {**LORA["lora"], "dropout": 0.0}}),
}


def training(args: argparse.Namespace) -> None:
    shared = {"model": args.model, "data": "builtin:domain/train.jsonl", "max_steps": args.steps, "batch_size": 8,
              "max_length": 96, "seed": 0, "save_steps": 10_000, "logging_steps": 1, "warmup_ratio": 0.05}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (old, new) in ARMS.items():
            seconds: dict[str, list[float]] = {"before": [], "after": []}
            for rnd in range(args.rounds):
                for arm, keys in (("before", old), ("after", new)):
                    folder = Path(tmp) / f"{name.split()[0]}-{arm}-{rnd}"
                    folder.mkdir()
                    seconds[arm].append(runtime(folder, {**shared, **keys}))
            before, after = (statistics.median(seconds[a]) for a in ("before", "after"))
            print(f"{name}: {before:.1f} s -> {after:.1f} s for {args.steps} steps: {before / after:.2f}x", flush=True)


def prefill(args: argparse.Namespace) -> None:
    loaded = load_model(args.model)
    model, tok = loaded.model.eval(), loaded.tokenizer
    prompts = [render_prompt(tok, it.question) for it in load_suite("general").by_type("mc")[:60]]
    shared_min = decode.MIN_SHARED_PREFIX
    seconds: dict[str, list[float]] = {"per row": [], "shared": []}
    replies: dict[str, list[str]] = {}
    for _ in range(args.rounds):
        for arm, minimum in (("per row", 10**9), ("shared", shared_min)):
            decode.MIN_SHARED_PREFIX = minimum
            start = time.perf_counter()
            replies[arm] = greedy_generate(model, tok, prompts, max_new_tokens=1, batch_size=64)
            seconds[arm].append(time.perf_counter() - start)
    decode.MIN_SHARED_PREFIX = shared_min
    before, after = (statistics.median(seconds[a]) for a in ("per row", "shared"))
    same = sum(a == b for a, b in zip(replies["per row"], replies["shared"]))
    print(f"prefill of 60 prompts: {before:.2f} s -> {after:.2f} s: {before / after:.2f}x; "
          f"first tokens identical: {same}/{len(prompts)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="smollm2-135m", help="a built-in name or a Hugging Face folder")
    args = parser.parse_args()
    prefill(args)
    training(args)


if __name__ == "__main__":
    main()
