"""Generation throughput of the lm-eval bridge against lm-eval's own HF loop, on one task, in one process.

Run: python benchmarks/bench_lm_eval_generate.py [--items 64] [--batch-size 16] [--new-tokens 48] [--repeats 3]
The task is GSM8K's own lm-eval configuration (`include:` of the installed `gsm8k.yaml`: its prompt, stop
strings, filters and metric) over arithmetic questions written here, 3-shot, on smollm2-135m. lm-eval's
`simple_evaluate` runs it twice per round, back to back in alternating order: once over plain HFLM (lm-eval's
`generate_until` loop) and once through `evaluate_lm_eval` (forgetless's batched decoder). Prints items/s of
each and the median ratio of the rounds. Exits 1 unless every reply and every outcome is identical.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch
import yaml

from forgetless.integrations.lm_eval import evaluate_lm_eval, load_tasks
from forgetless.models import load_model


def write_task(folder: Path, items: int, new_tokens: int) -> Path:
    """A local copy of GSM8K's task over `items` sums (and 3 shots), with `new_tokens` to generate."""
    import lm_eval

    def rows(pairs):
        return "".join(json.dumps({"question": f"What is {a} plus {b}?",
                                   "answer": f"{a} plus {b} is {a + b}.\n#### {a + b}"}) + "\n" for a, b in pairs)

    sums = [(a, b) for a in range(1, 40) for b in range(1, 40)][:items]
    (folder / "test.jsonl").write_text(rows(sums))
    (folder / "train.jsonl").write_text(rows([(60, 3), (70, 2), (80, 1)]))
    path = folder / "sums.yaml"
    path.write_text(yaml.safe_dump({
        "include": str(Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml"), "task": "sums", "tag": [],
        "dataset_path": "json", "dataset_name": None, "num_fewshot": 3,
        "dataset_kwargs": {"data_files": {"test": str(folder / "test.jsonl"), "train": str(folder / "train.jsonl")}},
        "generation_kwargs": {"until": ["Question:", "</s>", "<|im_end|>"], "do_sample": False, "temperature": 0.0,
                              "max_gen_toks": new_tokens}}))
    return path


def run_plain(loaded, path: Path, batch_size: int) -> tuple[float, list[tuple[str, float]]]:
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    tasks = load_tasks([str(path)])
    lm = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=batch_size)
    start = time.perf_counter()
    out = lm_eval.simple_evaluate(model=lm, tasks=["sums"], task_manager=tasks.manager, log_samples=True,
                                  bootstrap_iters=0)
    took = time.perf_counter() - start
    samples = sorted((s for s in out["samples"]["sums"] if s["filter"] == "strict-match"), key=lambda s: s["doc_id"])
    return took, [(s["resps"][0][0], float(s["exact_match"])) for s in samples]


def run_bridge(loaded, path: Path, batch_size: int) -> tuple[float, list[tuple[str, float]], dict]:
    start = time.perf_counter()
    result = evaluate_lm_eval(loaded, [str(path)], batch_size=batch_size)
    took = time.perf_counter() - start
    return took, [(it.reply, float(it.correct)) for it in result.items], result.settings["lm_eval"]["generated_by"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    torch.manual_seed(0)
    loaded = load_model("smollm2-135m")
    path = write_task(Path(tempfile.mkdtemp(prefix="bench-gen-")), args.items, args.new_tokens)
    print(f"smollm2-135m, {args.items} GSM8K-style items, 3-shot, up to {args.new_tokens} new tokens, "
          f"batch {args.batch_size}, torch threads {torch.get_num_threads()}")
    run_bridge(loaded, path, args.batch_size)  # warm-up: datasets cache, first-call costs
    ratios, same = [], True
    for r in range(args.repeats):
        order = ("bridge", "plain") if r % 2 == 0 else ("plain", "bridge")
        times = {}
        for which in order:
            if which == "plain":
                times["plain"], plain = run_plain(loaded, path, args.batch_size)
            else:
                times["bridge"], bridged, by = run_bridge(loaded, path, args.batch_size)
        same = same and plain == bridged and by == {"forgetless": args.items, "lm-eval": 0}
        ratios.append(times["plain"] / times["bridge"])
        print(f"round {r + 1}: lm-eval loop {times['plain']:.1f} s ({args.items / times['plain']:.2f} items/s), "
              f"bridge {times['bridge']:.1f} s ({args.items / times['bridge']:.2f} items/s): {ratios[-1]:.2f}x")
    accuracy = sum(c for _, c in plain) / len(plain)
    print(f"median {statistics.median(ratios):.2f}x; replies and outcomes identical: {same}; "
          f"strict-match accuracy {accuracy:.3f}")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
