"""Multiple choice by log-likelihood, as lm-evaluation-harness scores it, but sharing each context.

For each item: loglik(choice) = sum of log p(continuation tokens | context), with context and
continuation tokenized separately. `acc` takes the argmax of loglik, `acc_norm` the argmax of
loglik / len(choice in UTF-8 bytes). The context (usually most of the tokens) runs once per
question; its KV cache is then gathered for every choice of that question.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from forgetless.eval.prompts import continuation_text, encode


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


def _left_pad(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r)
        mask[i, width - len(r):] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def _score_batch(model: Any, contexts: list[list[int]], conts: list[list[list[int]]], pad_id: int) -> list[list[float]]:
    """Log-likelihoods for a batch of questions, each with its own list of continuations."""
    device = next(model.parameters()).device
    ctx_ids, ctx_mask = _left_pad(contexts, pad_id, device)  # (B, Tc)
    ctx_pos = (ctx_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ctx_ids, attention_mask=ctx_mask, position_ids=ctx_pos, use_cache=True, logits_to_keep=1)
    first_logp = F.log_softmax(out.logits[:, -1].float(), dim=-1)  # (B, V): predicts each choice's first token

    owner = [q for q, cs in enumerate(conts) for _ in cs]  # question index of each continuation row
    flat = [c for cs in conts for c in cs]
    cache = out.cache
    cache.batch_select_indices(torch.tensor(owner, device=device))
    width = max(len(c) for c in flat)
    cont_ids = torch.full((len(flat), width), pad_id, dtype=torch.long, device=device)
    cont_mask = torch.zeros((len(flat), width), dtype=torch.long, device=device)
    for i, c in enumerate(flat):
        cont_ids[i, : len(c)] = torch.tensor(c, device=device)
        cont_mask[i, : len(c)] = 1
    rows = torch.tensor(owner, device=device)
    start = ctx_mask.sum(-1)[rows]  # first continuation position of each row
    cont_pos = start[:, None] + torch.arange(width, device=device)[None, :]
    logits = model(input_ids=cont_ids, attention_mask=torch.cat([ctx_mask[rows], cont_mask], dim=1),
                   position_ids=cont_pos, cache=cache, use_cache=False).logits.float()
    logp = F.log_softmax(logits[:, :-1], dim=-1)  # position t predicts continuation token t+1
    totals = first_logp[rows].gather(1, cont_ids[:, :1]).squeeze(1)
    if width > 1:
        later = logp.gather(2, cont_ids[:, 1:, None]).squeeze(2) * cont_mask[:, 1:]
        totals = totals + later.sum(1)
    result, k = [], 0
    for cs in conts:
        result.append(totals[k: k + len(cs)].tolist())
        k += len(cs)
    return result


def score_multiple_choice(model: Any, tokenizer: Any, contexts: Sequence[str], choices: Sequence[Sequence[str]], *,
                          batch_size: int = 16, on_batch: Callable[[int], None] | None = None) -> list[McScore]:
    """Score each (rendered context, choices) pair; batches sorted by length, results in input order."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ctx_tokens = [encode(tokenizer, c) for c in contexts]
    cont_tokens = [[encode(tokenizer, continuation_text(tokenizer, ch)) for ch in chs] for chs in choices]
    order = sorted(range(len(contexts)), key=lambda i: (-len(ctx_tokens[i]), i))
    scores: list[McScore | None] = [None] * len(contexts)
    for b in range(0, len(order), batch_size):
        idx = order[b: b + batch_size]
        logliks = _score_batch(model, [ctx_tokens[i] for i in idx], [cont_tokens[i] for i in idx], pad_id)
        for i, ll in zip(idx, logliks):
            scores[i] = make_score(ll, choices[i])
        if on_batch:
            on_batch(len(idx))
    return scores  # type: ignore[return-value]


@torch.no_grad()
def score_multiple_choice_bruteforce(model: Any, tokenizer: Any, contexts: Sequence[str],
                                     choices: Sequence[Sequence[str]]) -> list[McScore]:
    """Reference: one full forward per context+choice, no padding, no cache. Slow; for tests and benchmarks."""
    device = next(model.parameters()).device
    scores = []
    for context, chs in zip(contexts, choices):
        ctx = encode(tokenizer, context)
        logliks = []
        for ch in chs:
            cont = encode(tokenizer, continuation_text(tokenizer, ch))
            ids = torch.tensor([ctx + cont], device=device)
            logp = F.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
            targets = ids[0, len(ctx):]
            logliks.append(logp[len(ctx) - 1:].gather(1, targets[:, None]).sum().item())
        scores.append(make_score(logliks, chs))
    return scores
