"""lm-evaluation-harness agreement and speed: the same multiple-choice items on smollm2-135m, scored by
lm-eval and by forgetless, on one machine in one process.

Run: python benchmarks/bench_lm_eval.py [--suite FILE.jsonl] [--items 100] [--batch-sizes 1,8,32] [--profile]
The first N mc items of a suite (`general`, or any suite file, so the comparison can be repeated on
items the project did not write) are exported with `export_suite` (what `forgetless export-lm-eval`
writes) and run by lm-eval's plain HFLM at each batch size, then by the bridge's model at the best
one; forgetless scores them with `evaluate(open_ended=False)`, its MC-only path (packed rows).
`--profile` first breaks one forgetless evaluation down by stage, for the packed path and for the
prefill-and-gather path that open-ended evaluation takes. Timing then runs in
rounds (`--repeats`), forgetless and lm-eval back to back in alternating order, and the ratio is the
median of the rounds' wall-time ratios. Exits 1 unless every per-item prediction is identical and
every log-likelihood is within 1e-3. Plain HFLM also scores
the chat template's trailing newline (docs/lm-eval.md), a constant per question that is tiny for a
trained model; the bridge does not.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch

from forgetless.eval import EvalSettings, evaluate
from forgetless.eval.prompts import continuation_text, encode, encode_start, render_prompt
from forgetless.integrations.lm_eval import evaluate_lm_eval, export_suite
from forgetless.models import load_model
from forgetless.suites import Suite, load_suite

TOLERANCE = 1e-3


def run_plain_lm_eval(loaded, task: str, folder: str, batch_size: int) -> tuple[float, list[list[float]]]:
    """lm-eval as its users run it: HFLM over the model in memory, `simple_evaluate` with sample logging."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=folder, include_defaults=False)
    lm = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=batch_size)
    start = time.perf_counter()
    out = lm_eval.simple_evaluate(model=lm, tasks=[task], task_manager=manager, log_samples=True, bootstrap_iters=0)
    took = time.perf_counter() - start
    samples = sorted(out["samples"][task], key=lambda s: s["doc_id"])
    return took, [[float(r[0]) for r in s["filtered_resps"]] for s in samples]


def agreement(name: str, logliks: list[list[float]], reference) -> bool:
    preds_same = all(max(range(len(ll)), key=lambda i: (ll[i], -i)) == ref.pred for ll, ref in zip(logliks, reference))
    worst = max(abs(a - b) for ll, ref in zip(logliks, reference) for a, b in zip(ll, ref.logliks))
    ok = preds_same and worst <= TOLERANCE and len(logliks) == len(reference)
    print(f"  {name}: identical predictions {preds_same} ({len(logliks)} items), max |loglik diff| {worst:.2e} "
          f"-> {'PASS' if ok else 'FAIL'}")
    return ok


def timed_forgetless(loaded, suite: Suite, batch_size: int):
    start = time.perf_counter()
    result = evaluate(loaded, [suite], settings=EvalSettings(open_ended=False, batch_size=batch_size))
    return time.perf_counter() - start, result.items


def profile(loaded, items, batch_size: int) -> None:
    """Seconds per stage of one MC evaluation (one pass each, after a warm-up), for both scoring paths."""
    from forgetless.eval.decode import pad_id_of, prefill
    from forgetless.eval.loglik import score_choices, score_packed

    tok, model = loaded.tokenizer, loaded.model
    clock = time.perf_counter()
    rows = [encode_start(tok, render_prompt(tok, it.question)) for it in items]
    conts = [[encode(tok, continuation_text(tok, c)) for c in it.choices] for it in items]
    stages = {"tokenize (both paths)": time.perf_counter() - clock}
    pad = pad_id_of(tok)
    batches = [(rows[b:b + batch_size], conts[b:b + batch_size]) for b in range(0, len(rows), batch_size)]
    with torch.no_grad():
        score_packed(model, *batches[0], pad)
        for name in ("packed: one forward per batch", "cache path: prefill", "cache path: gather + choices"):
            stages[name] = 0.0
        for r, c in batches:
            clock = time.perf_counter()
            score_packed(model, r, c, pad)
            stages["packed: one forward per batch"] += time.perf_counter() - clock
            clock = time.perf_counter()
            pre = prefill(model, r, pad)
            stages["cache path: prefill"] += time.perf_counter() - clock
            clock = time.perf_counter()
            score_choices(model, pre, c, pad)
            stages["cache path: gather + choices"] += time.perf_counter() - clock
    for name, seconds in stages.items():
        print(f"  profile | {name}: {seconds:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--suite", default="general", help="a bundled suite name or a suite JSONL file")
    parser.add_argument("--items", type=int, default=100, help="its first N mc items")
    parser.add_argument("--batch-sizes", default="1,8,32", help="lm-eval batch sizes to try")
    parser.add_argument("--batch-size", type=int, default=64, help="forgetless batch size (evaluate's default)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (one run of each engine)")
    parser.add_argument("--profile", action="store_true", help="break one forgetless evaluation down first")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    loaded = load_model("smollm2-135m")
    source = load_suite(args.suite)
    items = source.by_type("mc")[: args.items]
    suite = Suite(name=f"{source.name}-mc{len(items)}", path=None, items=items)
    n_choices = sum(len(it.choices) for it in items)
    print(f"machine: {os.cpu_count()} CPU threads, torch {torch.__version__}, load average "
          f"{os.getloadavg()[0]:.1f}; {len(items)} mc items, {n_choices} choices")
    tok = loaded.tokenizer
    ctx = [len(encode(tok, render_prompt(tok, it.question))) for it in items]
    cont = [[len(encode(tok, continuation_text(tok, c))) for c in it.choices] for it in items]
    per_choice = sum(c * len(cs) + sum(cs) for c, cs in zip(ctx, cont))
    shared = sum(ctx) + sum(map(sum, cont))
    print(f"tokens through the model: lm-eval {per_choice:,} (the context again with every choice), forgetless "
          f"{shared:,} (each context once) = {per_choice / shared:.2f}x fewer, whatever the load")
    folder = tempfile.mkdtemp(prefix="bench-lm-eval-")
    task = export_suite(suite, loaded.tokenizer, folder).task
    timed_forgetless(loaded, Suite(name="warm-up", path=None, items=items[:4]), args.batch_size)
    if args.profile:
        profile(loaded, items, args.batch_size)

    _, reference = timed_forgetless(loaded, suite, args.batch_size)
    ok, scan = True, {}
    for bs in (int(x) for x in args.batch_sizes.split(",")):
        scan[bs], logliks = run_plain_lm_eval(loaded, task, folder, bs)
        print(f"lm-eval HFLM batch {bs}: {scan[bs]:.1f} s")
        ok &= agreement(f"lm-eval batch {bs} vs forgetless", logliks, reference)
    best = min(scan, key=scan.get)
    bridged = evaluate_lm_eval(loaded, [os.path.join(folder, f"{task}.yaml")], batch_size=best)
    ok &= agreement(f"bridge (batch {best}) vs forgetless", [it.logliks for it in bridged.items], reference)
    # Timing: rounds of one run each, back to back, in alternating order; load from other work that
    # comes and goes then falls on both sides of a round's ratio alike.
    rounds = []
    for r in range(args.repeats):
        took = {}
        for side in ("forgetless", "lm-eval") if r % 2 == 0 else ("lm-eval", "forgetless"):
            took[side] = (timed_forgetless(loaded, suite, args.batch_size) if side == "forgetless"
                          else run_plain_lm_eval(loaded, task, folder, best))[0]
        fl, lm = took["forgetless"], took["lm-eval"]
        rounds.append((fl, lm))
        print(f"round {r + 1}: forgetless {fl:.1f} s, lm-eval batch {best} {lm:.1f} s -> {lm / fl:.2f}x")
    ratios = sorted(lm / fl for fl, lm in rounds)
    print(f"wall-time ratio, lm-eval at its best batch size ({best}) / forgetless (mc only, batch "
          f"{args.batch_size}): median {statistics.median(ratios):.2f}x over {len(ratios)} rounds "
          f"(range {ratios[0]:.2f}x to {ratios[-1]:.2f}x; target >= 2.5x); load average now {os.getloadavg()[0]:.1f}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
