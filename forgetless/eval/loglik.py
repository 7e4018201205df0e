"""Multiple choice by log-likelihood, as lm-evaluation-harness scores it, but sharing each context.

For each item: loglik(choice) = sum of log p(continuation tokens | context), with context and
continuation tokenized separately. `acc` takes the argmax of loglik, `acc_norm` the argmax of
loglik / len(choice in UTF-8 bytes). The context (usually most of the tokens) runs once per
question. Scored alone, a context and all its choices go through the model as one packed row
(`score_packed`); asked openly too, its prefilled KV cache is gathered for every choice and serves
the open-ended answer to the same question.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from forgetless.eval.decode import (
    CACHE,
    MIN_SHARED_PREFIX,
    Prefill,
    eos_ids_of,
    generate_exact,
    greedy_decode,
    pad_id_of,
    prefill,
    reuses_cache,
    shared_prefix_length,
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


def packs(model: Any) -> bool:
    """Whether `score_packed` is exact for `model`: a plain cache (no sliding window or other state), and an
    attention kernel that takes an arbitrary 4D mask (sdpa or eager; flash attention cannot)."""
    kernel = getattr(getattr(model, "config", None), "_attn_implementation", None)
    return kernel in ("sdpa", "eager") and reuses_cache(model)


@torch.no_grad()
def score_packed(model: Any, contexts: Sequence[Sequence[int]], conts: list[list[list[int]]],
                 pad_id: int) -> list[list[float]]:
    """Log-likelihood of each continuation, each context and all its choices packed into one row.

    A choice's tokens see the context and the earlier tokens of their own choice, not the other choices
    (a block attention mask, additive, as transformers uses a 4D mask unchanged), and their positions
    restart right after the context: each choice reads what context + choice alone would. One forward
    per batch, each context once, no cache copies; the prefix every context shares (a chat template's
    system prompt) runs once for the batch; the output head runs only at the positions that predict a
    choice token (`logits_to_keep`).
    """
    device = next(model.parameters()).device
    dtype = model.get_input_embeddings().weight.dtype  # the attention scores' dtype
    shared = shared_prefix_length(contexts) if len(contexts) > 1 else 0
    past: dict[str, Any] = {}
    if shared >= MIN_SHARED_PREFIX:  # the template's system prompt: computed once, its cache repeated over rows
        head = torch.tensor([list(contexts[0][:shared])], dtype=torch.long, device=device)
        cache = getattr(model(input_ids=head, use_cache=True, logits_to_keep=1), CACHE)
        cache.batch_repeat_interleave(len(contexts))
        past = {CACHE: cache, "use_cache": True}
        contexts = [c[shared:] for c in contexts]
    else:
        shared = 0
    width = max(len(c) + sum(map(len, cs)) for c, cs in zip(contexts, conts))
    ids = torch.full((len(contexts), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(contexts), width), dtype=torch.long)  # padding at 0 keeps RoPE scaling as alone
    segment = torch.full((len(contexts), width), -1, dtype=torch.long)  # 0 context, k choice k, -1 padding
    rows, sources, targets, owners = [], [], [], []  # per continuation token: row, predicting column, token, choice
    flat = 0  # the choice's index over the whole batch
    for b, (ctx, choices) in enumerate(zip(contexts, conts)):
        n = len(ctx)
        ids[b, :n], positions[b, :n], segment[b, :n] = torch.tensor(ctx), torch.arange(shared, shared + n), 0
        at = n
        for k, cont in enumerate(choices, start=1):
            ids[b, at:at + len(cont)] = torch.tensor(cont)
            positions[b, at:at + len(cont)] = torch.arange(shared + n, shared + n + len(cont))
            segment[b, at:at + len(cont)] = k
            for j, token in enumerate(cont):
                rows.append(b)
                sources.append(n - 1 if j == 0 else at + j - 1)
                targets.append(token)
                owners.append(flat)
            at += len(cont)
            flat += 1
    index = torch.arange(width)
    query, key = segment[:, :, None], segment[:, None, :]
    allowed = (index[None, :] <= index[:, None]) & (key != -1) & (query != -1) & ((key == 0) | (key == query))
    allowed |= torch.eye(width, dtype=torch.bool)[None] & (query == -1)  # padding sees itself: no empty rows
    allowed = torch.cat([(query != -1).expand(-1, -1, shared), allowed], dim=2)  # and every real token the prefix
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]
    keep = sorted(set(sources))
    column = {c: i for i, c in enumerate(keep)}
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                   logits_to_keep=torch.tensor(keep, device=device), **({"use_cache": False} | past)).logits
    picked = logits[torch.tensor(rows, device=device), torch.tensor([column[c] for c in sources], device=device)]
    logp = F.log_softmax(picked.float(), dim=-1).gather(1, torch.tensor(targets, device=device)[:, None])[:, 0]
    totals = torch.zeros(sum(map(len, conts)), dtype=torch.float64, device=device)
    totals.index_add_(0, torch.tensor(owners, device=device), logp.double())
    result, k = [], 0
    for choices in conts:
        result.append(totals[k: k + len(choices)].tolist())
        k += len(choices)
    return result


def answer_and_score(model: Any, tokenizer: Any, contexts: Sequence[str], choices: Sequence[Sequence[str]], *,
                     batch_size: int = 16, max_new_tokens: int = 0, after_words: bool = False,
                     on_batch: Callable[[int], None] | None = None) -> tuple[list[McScore], list[str] | None]:
    """Score each item's choices and, with `max_new_tokens`, answer it openly from the same prefill.
    `after_words`: the contexts end in an answer's opening words (`answer_context`), so a space leads each choice."""
    pad_id = pad_id_of(tokenizer)
    eos_ids = eos_ids_of(model, tokenizer)
    ctx_tokens = [encode_start(tokenizer, c) for c in contexts]
    cont_tokens = [[encode(tokenizer, continuation_text(tokenizer, ch, after_words)) for ch in chs] for chs in choices]
    fast = reuses_cache(model)
    packed = not max_new_tokens and packs(model)  # no reply to decode, so no prefilled cache to keep
    size = [len(c) + (sum(map(len, cs)) if packed else 0) for c, cs in zip(ctx_tokens, cont_tokens)]
    order = sorted(range(len(contexts)), key=lambda i: (-size[i], i))  # rows of a batch pad to about one length
    scores: list[McScore | None] = [None] * len(contexts)
    replies: list[str] = [""] * len(contexts)
    for b in range(0, len(order), batch_size):
        idx = order[b: b + batch_size]
        rows, conts = [ctx_tokens[i] for i in idx], [cont_tokens[i] for i in idx]
        with torch.no_grad():
            if packed:
                logliks = score_packed(model, rows, conts, pad_id)
            else:
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
                          batch_size: int = 16, after_words: bool = False,
                          on_batch: Callable[[int], None] | None = None) -> list[McScore]:
    """Score each (rendered context, choices) pair; batches sorted by length, results in input order."""
    return answer_and_score(model, tokenizer, contexts, choices, batch_size=batch_size, after_words=after_words,
                            on_batch=on_batch)[0]


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
                                     choices: Sequence[Sequence[str]], after_words: bool = False) -> list[McScore]:
    """Reference: one full forward per context+choice, no padding, no cache. Slow; for tests and benchmarks."""
    ctx = [encode_start(tokenizer, c) for c in contexts]
    conts = [[encode(tokenizer, continuation_text(tokenizer, ch, after_words)) for ch in chs] for chs in choices]
    return [make_score(ll, chs) for ll, chs in zip(score_plain(model, ctx, conts), choices)]
