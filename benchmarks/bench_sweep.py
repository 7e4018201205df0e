"""How much does a recovery sweep cost per alpha, against one plain `evaluate` of the same suites?

A "fully fine-tuned" model is made from the base by adding small Gaussian noise to every weight
(noise * std(weight)), saved as a forgetless run folder. Then, on the same suites and settings:

    plain     evaluate(base) before the sweep and evaluate(tuned) after it, each model on its own
    sweep     sweep(base, tuned, alphas): per alpha, set the weights in place + evaluate + paired stats

Printed: ratio_overhead = (plain + sweep overhead per alpha) / plain, where the overhead is what
the sweep adds around each evaluation (setting the weights, paired bootstrap statistics); the
target is <= 1.1. Also ratio_wall_clock = sweep seconds per alpha / mean plain evaluate, which on a
shared machine is as noisy as the evaluations themselves (alpha = 0 and 1 repeat the plain ones).

Run: `python benchmarks/bench_sweep.py --quick` (a few minutes on 2 CPU cores) or without --quick
for the full general + domain suites.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from forgetless.eval import EvalSettings, evaluate
from forgetless.merge import sweep
from forgetless.models import load_model
from forgetless.models.loading import RUN_FILE
from forgetless.suites import Suite, load_suite


def subset(name: str, n_mc: int, n_gen: int) -> Suite:
    """The first n_mc mc and n_gen gen items of a bundled suite, under the suite's own name."""
    suite = load_suite(name)
    items = suite.by_type("mc")[:n_mc] + suite.by_type("gen")[:n_gen]
    return Suite(name=suite.name, path=None, items=items)


def make_tuned_run(base_spec: str, folder: Path, noise: float, seed: int) -> Path:
    """base + noise * std(w) * N(0, 1) on every weight, saved as a full-fine-tuning run folder."""
    loaded = load_model(base_spec, device="cpu", dtype="float32")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in loaded.model.parameters():
            p.add_(noise * p.float().std() * torch.randn(p.shape, generator=gen).to(p.dtype))
    loaded.model.save_pretrained(folder / "model")
    loaded.tokenizer.save_pretrained(folder / "model")
    (folder / RUN_FILE).write_text(json.dumps({"base_model": base_spec, "model": "model"}))
    return folder


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--quick", action="store_true", help="24 mc + 6 gen general items, 12 mc + 6 gen domain items")
    parser.add_argument("--alphas", default="0,0.5,1")
    parser.add_argument("--noise", type=float, default=0.02, help="noise std as a fraction of each weight's std")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    suites = ([subset("general", 24, 6), subset("domain", 12, 6)] if args.quick
              else [load_suite("general"), load_suite("domain")])
    settings = EvalSettings()
    alphas = [float(a) for a in args.alphas.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    try:
        run = make_tuned_run(args.model, folder, args.noise, seed=0)
        base = load_model(args.model, device=args.device)
        tuned = load_model(str(run), device=args.device)
        _, plain_base = timed(evaluate, base, suites, settings=settings)
        result, total = timed(sweep, base, tuned, alphas=alphas, general_suites=suites[:1], domain_suite=suites[1],
                              settings=settings)
        _, plain_tuned = timed(evaluate, tuned, suites, settings=settings)  # before and after: drift shows
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    plain = statistics.mean([plain_base, plain_tuned])
    n = len(result.rows)
    evaluating = sum(r.eval_seconds - r.set_seconds for r in result.rows)
    overhead = (total - result.load_seconds - evaluating) / n  # set weights + paired stats, per alpha
    numbers = {
        "model": args.model, "quick": args.quick, "device": str(base.device), "threads": args.threads,
        "items": sum(len(s) for s in suites), "alphas": [r.alpha for r in result.rows],
        "plain_evaluate_seconds": {"base": round(plain_base, 2), "tuned": round(plain_tuned, 2)},
        "sweep_evaluate_seconds": {f"{r.alpha:g}": round(r.eval_seconds - r.set_seconds, 2) for r in result.rows},
        "sweep_set_alpha_seconds": {f"{r.alpha:g}": r.set_seconds for r in result.rows},
        "sweep_overhead_per_alpha": round(overhead, 3),
        "sweep_load_seconds": result.load_seconds, "sweep_total_seconds": round(total, 2),
        "trained_parameters": result.trained,
        # what a sweep adds to each evaluation (timing noise of the evaluations themselves cancels)
        "ratio_overhead": round((plain + overhead) / plain, 3),
        # raw wall clock, per alpha, against plain evaluations of base and tuned (noisy on a shared machine)
        "ratio_wall_clock": round((total - result.load_seconds) / n / plain, 3),
        "chosen": result.chosen,
    }
    for key, value in numbers.items():
        print(f"{key:28s} {value}")
    print(f"\nsweep per alpha / plain evaluate = {numbers['ratio_overhead']:.3f} from the measured overhead, "
          f"{numbers['ratio_wall_clock']:.3f} raw wall clock (target <= 1.1)")
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2) + "\n")


if __name__ == "__main__":
    main()
