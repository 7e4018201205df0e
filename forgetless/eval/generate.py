"""Batched greedy decoding with left padding, a token limit and stop strings.

Greedy decoding makes before/after replies comparable item by item; prompts are sorted by length
so a batch wastes little on padding.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from forgetless.eval.prompts import encode


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    cut = min((text.find(s) for s in stops if s and s in text), default=len(text))
    return text[:cut].strip()


@torch.no_grad()
def greedy_generate(model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int = 32,
                    batch_size: int = 16, stop: Sequence[str] = (),
                    on_batch: Callable[[int], None] | None = None) -> list[str]:
    """Greedy continuation of each rendered prompt, decoded without special tokens, cut at `stop`."""
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tokens = [encode(tokenizer, p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: (-len(tokens[i]), i))
    replies: list[str] = [""] * len(prompts)
    for b in range(0, len(order), batch_size):
        idx = order[b: b + batch_size]
        width = max(len(tokens[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, width - len(tokens[i]):] = torch.tensor(tokens[i])
            mask[row, width - len(tokens[i]):] = 1
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                             max_new_tokens=max_new_tokens, pad_token_id=pad_id, num_beams=1,
                             temperature=None, top_p=None, top_k=None)
        for row, i in enumerate(idx):
            text = tokenizer.decode(out[row, width:], skip_special_tokens=True)
            replies[i] = cut_at_stops(text, stop)
        if on_batch:
            on_batch(len(idx))
    return replies
