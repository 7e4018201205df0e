"""Batched greedy decoding with left padding, a token limit and stop strings.

Greedy decoding makes before/after replies comparable item by item; prompts are sorted by length
so a batch wastes little on padding. A small loop over the KV cache replaces `model.generate`,
whose per-step overhead dominates on CPU for a model this small.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from forgetless.eval.decode import eos_ids_of, generate_exact, greedy_decode, pad_id_of, prefill, reuses_cache
from forgetless.eval.prompts import encode_start


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    cut = min((text.find(s) for s in stops if s and s in text), default=len(text))
    return text[:cut].strip()


def greedy_tokens(model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int = 32,
                  batch_size: int = 16, on_batch: Callable[[int], None] | None = None,
                  stop: Callable[[list[int]], bool] | None = None) -> list[list[int]]:
    """Greedy reply tokens of each rendered prompt, end-of-sequence excluded: a reply of `max_new_tokens`
    tokens hit the limit before the model ended it. `stop` may end a row sooner on the fast path (a saving
    only: callers cut the text at their stop strings)."""
    pad_id, eos_ids = pad_id_of(tokenizer), eos_ids_of(model, tokenizer)
    tokens = [encode_start(tokenizer, p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: (-len(tokens[i]), i))
    replies: list[list[int]] = [[] for _ in prompts]
    fast = reuses_cache(model)
    for b in range(0, len(order), batch_size):
        idx = order[b: b + batch_size]
        rows = [tokens[i] for i in idx]
        decode = dict(max_new_tokens=max_new_tokens, eos_ids=eos_ids, pad_id=pad_id)
        with torch.no_grad():
            outs = (greedy_decode(model, prefill(model, rows, pad_id), stop=stop, **decode) if fast
                    else generate_exact(model, rows, **decode))
        for i, toks in zip(idx, outs):
            replies[i] = toks
        if on_batch:
            on_batch(len(idx))
    return replies


def greedy_generate(model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int = 32,
                    batch_size: int = 16, stop: Sequence[str] = (),
                    on_batch: Callable[[int], None] | None = None) -> list[str]:
    """Greedy continuation of each rendered prompt, decoded without special tokens, cut at `stop`."""
    outs = greedy_tokens(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                         on_batch=on_batch)
    return [cut_at_stops(tokenizer.decode(toks, skip_special_tokens=True), stop) for toks in outs]
