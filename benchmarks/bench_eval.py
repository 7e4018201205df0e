"""Evaluation engine benchmark: the full `general` suite on smollm2-135m, and MC scoring vs brute force.

Run: python benchmarks/bench_eval.py [--quick]
Prints wall times, tokens per second against the model's raw forward throughput, and the
shared-context scorer's speed-up over one forward per context+choice (same machine, same run).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from forgetless.eval import EvalSettings, evaluate
from forgetless.eval.loglik import score_multiple_choice, score_multiple_choice_bruteforce
from forgetless.eval.prompts import continuation_text, encode
from forgetless.models import load_model
from forgetless.suites import load_suite


def raw_forward_tokens_per_second(model, batch: int = 16, length: int = 128, repeats: int = 3) -> float:
    ids = torch.randint(0, 1000, (batch, length))
    with torch.no_grad():
        model(input_ids=ids)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            model(input_ids=ids)
    return batch * length * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a quarter of the suite")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    loaded = load_model("smollm2-135m")
    model, tok = loaded.model, loaded.tokenizer
    suite = load_suite("general")
    if args.quick:
        suite = type(suite)(name=suite.name, path=suite.path, items=suite.items[::4])
    print(f"machine: {os.cpu_count()} CPU threads, torch {torch.__version__}; suite: {suite.counts()['types']}")

    raw = raw_forward_tokens_per_second(model)
    print(f"raw forward throughput (16x128 tokens): {raw:,.0f} tokens/s")

    settings = EvalSettings(batch_size=args.batch_size)
    start = time.perf_counter()
    result = evaluate(loaded, [suite], settings=settings)
    wall = time.perf_counter() - start
    mc = [it for it in result.items if it.type == "mc"]
    prompt_tokens = sum(len(encode(tok, it.prompt)) for it in result.items if it.type in ("mc", "gen"))
    choice_tokens = sum(len(encode(tok, continuation_text(tok, c))) for it in mc for c in it.choices)
    gen_tokens = sum(len(encode(tok, it.reply or "")) for it in result.items if it.reply is not None)
    mc_tokens = sum(len(encode(tok, it.prompt)) for it in mc) + choice_tokens
    print(f"full suite: {wall:.1f} s wall ({len(result.items)} items) "
          f"summary {result.summary[suite.name]['overall']}")
    print(f"tokens: prompts {prompt_tokens:,} (each mc context prefilled once for scoring and its open-ended twin), "
          f"choices {choice_tokens:,}, generated {gen_tokens:,}")
    total = prompt_tokens + choice_tokens + gen_tokens
    print(f"evaluation throughput: {total / wall:,.0f} tokens/s = {total / wall / raw:.2f}x raw forward "
          f"(generated tokens are decoded one step at a time)")

    contexts = [it.prompt for it in mc[:40]]
    choices = [it.choices for it in mc[:40]]
    start = time.perf_counter()
    fast = score_multiple_choice(model, tok, contexts, choices, batch_size=args.batch_size)
    fast_s = time.perf_counter() - start
    start = time.perf_counter()
    slow = score_multiple_choice_bruteforce(model, tok, contexts, choices)
    slow_s = time.perf_counter() - start
    same = all(f.pred == s.pred for f, s in zip(fast, slow))
    worst = max(abs(a - b) for f, s in zip(fast, slow) for a, b in zip(f.logliks, s.logliks))
    mc_tok = sum(len(encode(tok, c)) for c in contexts) + sum(len(encode(tok, continuation_text(tok, x))) for cs in choices for x in cs)
    print(f"MC scoring, 40 items: shared-context {fast_s:.2f} s vs brute force {slow_s:.2f} s "
          f"-> {slow_s / fast_s:.2f}x faster; same predictions: {same}; max |loglik diff| {worst:.2e}")
    print(f"MC scoring throughput: {mc_tok / fast_s:,.0f} unique tokens/s = {mc_tok / fast_s / raw:.2f}x raw forward")
    print(f"timings by suite: {result.timings}; mc items {len(mc)} ({mc_tokens:,} tokens)")


if __name__ == "__main__":
    main()
