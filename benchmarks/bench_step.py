"""The training step of `forgetless run`, piece by piece, measured side by side in one process, alternating.

Run: python benchmarks/bench_step.py [--rounds 3] [--batches 6] [--model M] [--tuned RUN_DIR]
- the task forward+backward of a LoRA model on 8 bundled domain examples: the plain forward (logits at every
  position, transformers' loss), logits at the scored positions only, and that plus the shared prompt prefix run
  once per batch (`forgetless.train.scored`);
- the KL term on the replayed rows of a mixed batch (25% self-replay): the base model run beside the trained one
  (`top_k: 0`) against targets computed once (`top_k: 128`);
- the same rows of the run's stream (25% self-replay, top-128 KL), batched as mixed and regrouped by length
  (`forgetless.train.data.group_by_length`), with the padded share of each;
- with --tuned (a LoRA run folder): the top-k KL against the exact KL on 48 replayed answers, for several k.
Prints each arm's seconds per batch (median over rounds) and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import forgetless.eval.decode as decode
from forgetless.models import load_model
from forgetless.models.adapters import adapters_disabled
from forgetless.train.config import FreezeSection, LoraSection
from forgetless.train.data import GROUP_WINDOW, collator_for, group_by_length, read_records, tokenize_records
from forgetless.train.freeze import apply_lora
from forgetless.train.regularizers.kl import KLToBase, mean_kl, topk_kl
from forgetless.train.replay import mix, replay_count, replay_records, sample
from forgetless.train.scored import scored_cross_entropy, scored_forward


def median_seconds(fn, batches) -> float:
    start = time.perf_counter()
    for b in batches:
        fn(b)
    return (time.perf_counter() - start) / len(batches)


def task_arms(model, batches, rounds: int) -> None:
    def plain(b):
        model(**{k: b[k] for k in ("input_ids", "attention_mask", "labels")}).loss.backward()

    def scored(b, prefix: bool):
        decode.MIN_SHARED_PREFIX = 4 if prefix else 10**9
        scored_cross_entropy(scored_forward(model, b), b["labels"]).backward()

    arms = {"plain forward": plain, "scored logits": lambda b: scored(b, False),
            "scored + shared prefix": lambda b: scored(b, True)}
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(rounds):
        for name, fn in arms.items():
            times[name].append(median_seconds(fn, batches))
            model.zero_grad(set_to_none=True)
    decode.MIN_SHARED_PREFIX = 4
    base = statistics.median(times["plain forward"])
    for name, values in times.items():
        med = statistics.median(values)
        print(f"task {name:24s} {med:.3f} s/batch  {base / med:.2f}x  rounds {[round(v, 2) for v in values]}")


def kl_arms(model, tokenizer, domain, replay, rounds: int) -> None:
    collate = collator_for(tokenizer)
    stream = [dict(e) for e in domain[:18]] + [{**e, "general": True} for e in replay[:6]]
    stream = [stream[i] for i in torch.randperm(len(stream), generator=torch.Generator().manual_seed(0))]
    live = KLToBase({"beta": 0.5, "examples": "general"})
    live.setup(model)
    pre = KLToBase({"beta": 0.5, "examples": "general", "top_k": 128})
    pre.setup(model)
    start = time.perf_counter()
    pre.prepare_examples(model, stream, collate)
    print(f"kl top-k targets for {sum(1 for e in stream if e.get('general'))} examples: "
          f"{time.perf_counter() - start:.2f} s once")
    batches = [collate(stream[i:i + 8]) for i in range(0, len(stream), 8)]

    def step(reg, b):
        out = scored_forward(model, b)
        (scored_cross_entropy(out, b["labels"]) + reg.penalty(model, b, outputs=out)).backward()

    times: dict[str, list[float]] = {"no KL": [], "KL, base model beside": [], "KL, top-128 targets": []}
    for _ in range(rounds):
        times["no KL"].append(median_seconds(lambda b: scored_cross_entropy(scored_forward(model, b),
                                                                             b["labels"]).backward(), batches))
        times["KL, base model beside"].append(median_seconds(lambda b: step(live, b), batches))
        times["KL, top-128 targets"].append(median_seconds(lambda b: step(pre, b), batches))
        model.zero_grad(set_to_none=True)
    base = statistics.median(times["no KL"])
    for name, values in times.items():
        med = statistics.median(values)
        print(f"step {name:24s} {med:.3f} s/batch  {med / base:.2f}x of a step without KL")


def grouping_arms(model, tokenizer, domain, replay, rounds: int, batches: int) -> None:
    collate = collator_for(tokenizer)
    k = replay_count(len(domain), 0.25)
    stream = mix([dict(e) for e in domain], [{**e, "general": True} for e in sample(replay, k, 0)], 0)
    stream = stream[:8 * batches]
    kl = KLToBase({"beta": 0.5, "examples": "general", "top_k": 128})
    kl.setup(model)
    kl.prepare_examples(model, stream, collate)
    arms = {"mixed": stream, "grouped by length": group_by_length(stream, 8)}
    assert sorted(map(id, arms["mixed"])) == sorted(map(id, arms["grouped by length"]))  # the same rows

    def step(b):
        out = scored_forward(model, b)
        (scored_cross_entropy(out, b["labels"]) + kl.penalty(model, b, outputs=out)).backward()

    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(rounds):
        for name, rows in arms.items():
            times[name].append(median_seconds(step, [collate(rows[i:i + 8]) for i in range(0, len(rows), 8)]))
            model.zero_grad(set_to_none=True)
    base = statistics.median(times["mixed"])
    for name, rows in arms.items():
        widths = [max(len(e["input_ids"]) for e in rows[i:i + 8]) for i in range(0, len(rows), 8)]
        padded = 1 - sum(len(e["input_ids"]) for e in rows) / (8 * sum(widths))
        med = statistics.median(times[name])
        print(f"stream {name:20s} {med:.3f} s/batch  {base / med:.2f}x  padding {padded:.0%} of the tokens  "
              f"rounds {[round(v, 2) for v in times[name]]}")


@torch.no_grad()
def topk_error(run_dir: str, model_spec: str) -> None:
    tuned = load_model(run_dir)
    tok = tuned.tokenizer
    records = replay_records("self", model=tuned.model, tokenizer=tok, model_path=load_model(model_spec).path,
                             num_prompts=160, max_new_tokens=64)
    examples = tokenize_records(records, tok, 96).examples[:48]
    collate = collator_for(tok)
    exact, bucketed = [], {k: [] for k in (8, 32, 64, 128, 512)}
    for i in range(0, len(examples), 8):
        b = collate(examples[i:i + 8])
        q = scored_forward(tuned.model, b).logits
        with adapters_disabled(tuned.model):
            p = scored_forward(tuned.model, b).logits
        exact.append(mean_kl(p, q, None).item())
        logp = torch.log_softmax(p.float(), -1)
        for k in bucketed:
            values, ids = logp.topk(k, -1)
            bucketed[k].append(topk_kl(q, ids, values).item())
    e = statistics.mean(exact)
    print(f"exact KL {e:.4f} nats/token on {len(examples)} replayed answers")
    for k, values in bucketed.items():
        print(f"top-{k:<4d} KL {statistics.mean(values):.4f}  {(e - statistics.mean(values)) / e:.2%} below")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tuned", help="a LoRA run folder: measure the top-k KL's error on it")
    args = parser.parse_args()
    torch.manual_seed(0)
    loaded = load_model(args.model)
    tok = loaded.tokenizer
    domain = tokenize_records(read_records("builtin:domain/train.jsonl"), tok, 96).examples
    domain = sample(domain, len(domain), 0)
    replay = tokenize_records(replay_records("self", model=loaded.model, tokenizer=tok, model_path=loaded.path,
                                             num_prompts=160, max_new_tokens=64), tok, 96).examples
    model = apply_lora(loaded.model, LoraSection(dropout=0.0), FreezeSection())
    model.set_attn_implementation("eager")  # what training picks on a CPU at 96 tokens
    model.train()
    collate = collator_for(tok)
    task_arms(model, [collate(domain[i:i + 8]) for i in range(0, 8 * args.batches, 8)], args.rounds)
    kl_arms(model, tok, domain, replay, args.rounds)
    grouping_arms(model, tok, domain, replay, args.rounds, 2 * GROUP_WINDOW)
    if args.tuned:
        topk_error(args.tuned, args.model)


if __name__ == "__main__":
    main()
