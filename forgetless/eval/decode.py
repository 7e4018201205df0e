"""Prefill once, then score choices and/or decode greedily from the same KV cache.

A multiple-choice item is asked twice (scored by log-likelihood, and answered openly); both read the
same context, so its forward pass runs once. Contexts are left-padded, with explicit position ids,
so a padded batch computes what each prompt alone would.

This holds for caches whose every layer is a plain growing key/value store (full attention: Llama,
Qwen, Phi-3, OLMo 2, SmolLM2...). Sliding-window layers (Gemma 2/3, Mistral) and other kinds keep
more state than keys and values, and mask against it; for such a model (`reuses_cache` is False)
the callers take the exact path instead: one plain forward per context and choice, and
`model.generate` per batch. Slower, never a wrong number.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, fields
from typing import Any, Callable, Sequence

import torch
from transformers.cache_utils import DynamicLayer
from transformers.modeling_outputs import CausalLMOutputWithPast

MIN_SHARED_PREFIX = 4  # below this, a separate forward for the prefix costs more than it saves

# The KV cache's name, as a forward argument and an output field: transformers renamed it from
# `past_key_values` to `cache` during 5.x (5.17 has the old name, 5.24 the new one); both work here.
CACHE = "cache" if "cache" in {f.name for f in fields(CausalLMOutputWithPast)} else "past_key_values"


_REUSES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> reuses_cache(model)


def is_plain_cache(cache: Any) -> bool:
    """Every layer only grows keys and values (no window, no other state): snapshots, gathers and a
    shared prefix repeated over rows are then exact."""
    return cache is not None and all(type(layer) is DynamicLayer for layer in getattr(cache, "layers", [None]))


@torch.no_grad()
def reuses_cache(model: Any) -> bool:
    """Whether this engine's cache reuse is exact for `model`, found once by the cache a one-token forward
    returns (the cache's layers, not the config, say how each layer attends)."""
    if model not in _REUSES:
        token = torch.zeros((1, 1), dtype=torch.long, device=next(model.parameters()).device)
        _REUSES[model] = is_plain_cache(getattr(model(input_ids=token, use_cache=True), CACHE, None))
    return _REUSES[model]


@torch.no_grad()
def generate_exact(model: Any, rows: Sequence[Sequence[int]], *, max_new_tokens: int, eos_ids: Sequence[int],
                   pad_id: int) -> list[list[int]]:
    """Greedy tokens after each row by `model.generate` on the left-padded batch, eos excluded. The model
    builds its own masks (sliding windows included) from the attention mask, and left padding moves no real
    token further from another, so each row gets what it would get alone."""
    device, stop = next(model.parameters()).device, set(eos_ids)
    width = max(len(row) for row in rows)
    ids = torch.tensor([[pad_id] * (width - len(row)) + list(row) for row in rows], dtype=torch.long, device=device)
    mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows], dtype=torch.long, device=device)
    new = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                         eos_token_id=list(eos_ids), pad_token_id=pad_id)[:, width:]
    out = []
    for tokens in new.tolist():
        end = next((i for i, t in enumerate(tokens) if t in stop), len(tokens))
        out.append(tokens[:end])
    return out


@dataclass
class Prefill:
    cache: Any  # transformers Cache holding the contexts, (B, heads, T, dim) per layer
    mask: torch.Tensor  # (B, T) attention mask, 0 on left padding
    last_logits: torch.Tensor  # (B, V) next-token logits after each context
    lengths: torch.Tensor  # (B,) real context tokens per row

    def snapshot(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The cache grows by concatenation (new tensors), so keeping references is a free snapshot."""
        return [(layer.keys, layer.values) for layer in self.cache.layers]

    def restore(self, saved: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        for layer, (keys, values) in zip(self.cache.layers, saved):
            layer.keys, layer.values = keys, values


def pad_id_of(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def eos_ids_of(model: Any, tokenizer: Any) -> list[int]:
    """Every token that ends a reply: the generation config's eos ids and the tokenizer's."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return sorted(set(ids))


def shared_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Tokens every row starts with (a chat template's system prompt), leaving each row one of its own."""
    limit = min(len(r) for r in rows) - 1
    first = rows[0]
    n = 0
    while n < limit and all(r[n] == first[n] for r in rows):
        n += 1
    return n


@torch.no_grad()
def prefill(model: Any, rows: Sequence[Sequence[int]], pad_id: int) -> Prefill:
    """Run the contexts once, keeping their KV cache. The prefix that all rows share (for SmolLM2's
    template, 24 of about 40 tokens) is computed for one row and repeated, then each row's own tokens
    follow it, left-padded: [shared | pad | own]. Padding is masked and positions are explicit, so a
    row sees what it would see alone."""
    device = next(model.parameters()).device
    shared = shared_prefix_length(rows) if len(rows) > 1 else 0
    past: dict[str, Any] = {}
    if shared >= MIN_SHARED_PREFIX:
        head = torch.tensor([list(rows[0][:shared])], dtype=torch.long, device=device)
        cache = getattr(model(input_ids=head, use_cache=True, logits_to_keep=1), CACHE)
        cache.batch_repeat_interleave(len(rows))
        past = {CACHE: cache}
        rows = [r[shared:] for r in rows]
    else:
        shared = 0
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), shared + width), dtype=torch.long)
    mask[:, :shared] = 1
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, shared + width - len(r):] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                **past)
    return Prefill(cache=getattr(out, CACHE), mask=mask, last_logits=out.logits[:, -1].float(), lengths=mask.sum(-1))


@torch.no_grad()
def greedy_decode(model: Any, pre: Prefill, *, max_new_tokens: int, eos_ids: Sequence[int],
                  pad_id: int, stop: Callable[[list[int]], bool] | None = None) -> list[list[int]]:
    """Greedy tokens after each context (eos excluded); the prefill's cache is left as it was. `stop` ends a
    row early once its tokens so far say so (a stop string written): the tokens before it do not change.

    A step costs a fixed weight read plus a share per row, so finished rows are dropped from the
    batch (cache included) once they are a quarter of it: short replies stop costing compute.
    """
    saved = pre.snapshot()
    device = pre.mask.device
    eos = torch.tensor(list(eos_ids), device=device)
    rows = torch.arange(pre.mask.shape[0], device=device)  # the prefill row of each row still decoding
    done = torch.zeros_like(rows, dtype=torch.bool)
    mask, positions, cache = pre.mask, pre.lengths.clone(), pre.cache
    tokens: list[list[int]] = [[] for _ in range(len(rows))]
    next_token = pre.last_logits.argmax(-1)
    try:
        for step in range(max_new_tokens):
            done |= torch.isin(next_token, eos)
            for row, token in zip(rows[~done].tolist(), next_token[~done].tolist()):
                tokens[row].append(token)
            if stop is not None:
                done |= torch.tensor([not d and stop(tokens[r]) for r, d in zip(rows.tolist(), done.tolist())],
                                     dtype=torch.bool, device=device)
            finished = int(done.sum())
            if finished == len(rows) or step == max_new_tokens - 1:
                break
            if 4 * finished >= len(rows):
                keep = (~done).nonzero().flatten()
                cache.batch_select_indices(keep)
                rows, done, mask, positions, next_token = (x[keep] for x in (rows, done, mask, positions, next_token))
            feed = torch.where(done, torch.full_like(next_token, pad_id), next_token)
            mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=mask.dtype, device=device)], dim=1)
            out = model(input_ids=feed[:, None], attention_mask=mask, position_ids=positions[:, None],
                        use_cache=True, **{CACHE: cache})
            cache, positions = getattr(out, CACHE), positions + 1
            next_token = out.logits[:, -1].argmax(-1)
    finally:
        pre.restore(saved)
    return tokens
