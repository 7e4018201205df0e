"""Multiple choice by log-likelihood, as lm-evaluation-harness scores it, but sharing each context.

For each item: loglik(choice) = sum of log p(continuation tokens | context), with context and
continuation tokenized separately. `acc` takes the argmax of loglik, `acc_norm` the argmax of
loglik / len(choice in UTF-8 bytes). The context (usually most of the tokens) runs once per
question; its KV cache is then gathered for every choice of that question, and serves the
open-ended answer to the same question too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from forgetless.eval.decode import (
    CACHE,
    Prefill,
    eos_ids_of,
    generate_exact,
    greedy_decode,
    pad_id_of,
    prefill,
    reuses_cache,
)
from forgetless.eval.prompts import continuation_text, encode, encode_start


@dataclass
class McScore:
    logliks: list[float]
    pred: int
    pred_norm: int


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


def make_score(logliks: list[float], choices: Sequence[str]) -> McScore:
    norm = [ll / max(1, len(c.encode("utf-8"))) for ll, c in zip(logliks, choices)]
    return McScore(logliks=logliks, pred=_argmax(logliks), pred_norm=_argmax(norm))


@torch.no_grad()
def score_choices(model: Any, pre: Prefill, conts: list[list[list[int]]], pad_id: int) -> list[list[float]]:
    """Log-likelihood of each continuation after its question's prefilled context."""
    device = pre.mask.device
    saved = pre.snapshot()
    owner = [q for q, cs in enumerate(conts) for _ in cs]  # question index of each continuation row
    flat = [c for cs in conts for c in cs]
    rows = torch.tensor(owner, device=device)
    pre.cache.batch_select_indices(rows)  # every choice row reads its own question's cache
    width = max(len(c) for c in flat)
    cont_ids = torch.full((len(flat), width), pad_id, dtype=torch.long, device=device)
    cont_mask = torch.zeros((len(flat), width), dtype=torch.long, device=device)
    for i, c in enumerate(flat):
        cont_ids[i, : len(c)] = torch.tensor(c, device=device)
        cont_mask[i, : len(c)] = 1
    cont_pos = pre.lengths[rows][:, None] + torch.arange(width, device=device)[None, :]
    try:
        logits = model(input_ids=cont_ids, attention_mask=torch.cat([pre.mask[rows], cont_mask], dim=1),
                       position_ids=cont_pos, use_cache=False, **{CACHE: pre.cache}).logits.float()
    finally:
        pre.restore(saved)
    first_logp = F.log_softmax(pre.last_logits, dim=-1)  # (B, V): predicts each choice's first token
    totals = first_logp[rows].gather(1, cont_ids[:, :1]).squeeze(1)
    if width > 1:
        logp = F.log_softmax(logits[:, :-1], dim=-1)  # position t predicts continuation token t+1
        totals = totals + (logp.gather(2, cont_ids[:, 1:, None]).squeeze(2) * cont_mask[:, 1:]).sum(1)
    result, k = [], 0
    for cs in conts:
        result.append(totals[k: k + len(cs)].tolist())
        k += len(cs)
    return result


def answer_and_score(model: Any, tokenizer: Any, contexts: Sequence[str], choices: Sequence[Sequence[str]], *,
                     batch_size: int = 16, max_new_tokens: int = 0,
                     on_batch: Callable[[int], None] | None = None) -> tuple[list[McScore], list[str] | None]:
    """Score each item's choices and, with `max_new_tokens`, answer it openly from the same prefill."""
    pad_id = pad_id_of(tokenizer)
    eos_ids = eos_ids_of(model, tokenizer)
    ctx_tokens = [encode_start(tokenizer, c) for c in contexts]
    cont_tokens = [[encode(tokenizer, continuation_text(tokenizer, ch)) for ch in chs] for chs in choices]
    order = sorted(range(len(contexts)), key=lambda i: (-len(ctx_tokens[i]), i))
    scores: list[McScore | None] = [None] * len(contexts)
    replies: list[str] = [""] * len(contexts)
    fast = reuses_cache(model)
    for b in range(0, len(order), batch_size):
        idx = order[b: b + batch_size]
        rows, conts = [ctx_tokens[i] for i in idx], [cont_tokens[i] for i in idx]
        with torch.no_grad():
            pre = prefill(model, rows, pad_id) if fast else None
            if max_new_tokens:
                decode = dict(max_new_tokens=max_new_tokens, eos_ids=eos_ids, pad_id=pad_id)
                answers = greedy_decode(model, pre, **decode) if pre else generate_exact(model, rows, **decode)
                for i, toks in zip(idx, answers):
                    replies[i] = tokenizer.decode(toks, skip_special_tokens=True).strip()
            logliks = score_choices(model, pre, conts, pad_id) if pre else score_plain(model, rows, conts)
        for i, ll in zip(idx, logliks):
            scores[i] = make_score(ll, choices[i])
        if on_batch:
            on_batch(len(idx))
    return scores, (replies if max_new_tokens else None)  # type: ignore[return-value]


def score_multiple_choice(model: Any, tokenizer: Any, contexts: Sequence[str], choices: Sequence[Sequence[str]], *,
                          batch_size: int = 16, on_batch: Callable[[int], None] | None = None) -> list[McScore]:
    """Score each (rendered context, choices) pair; batches sorted by length, results in input order."""
    return answer_and_score(model, tokenizer, contexts, choices, batch_size=batch_size, on_batch=on_batch)[0]


@torch.no_grad()
def score_plain(model: Any, contexts: Sequence[Sequence[int]], conts: list[list[list[int]]]) -> list[list[float]]:
    """The exact path: one full forward per context + continuation, no padding, no cache."""
    device = next(model.parameters()).device
    result = []
    for ctx, cs in zip(contexts, conts):
        logliks = []
        for cont in cs:
            ids = torch.tensor([list(ctx) + list(cont)], device=device)
            logp = F.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
            logliks.append(logp[len(ctx) - 1:].gather(1, ids[0, len(ctx):, None]).sum().item())
        result.append(logliks)
    return result


def score_multiple_choice_bruteforce(model: Any, tokenizer: Any, contexts: Sequence[str],
                                     choices: Sequence[Sequence[str]]) -> list[McScore]:
    """Reference: one full forward per context+choice, no padding, no cache. Slow; for tests and benchmarks."""
    ctx = [encode_start(tokenizer, c) for c in contexts]
    conts = [[encode(tokenizer, continuation_text(tokenizer, ch)) for ch in chs] for chs in choices]
    return [make_score(ll, chs) for ll, chs in zip(score_plain(model, ctx, conts), choices)]
