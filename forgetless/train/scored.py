"""The training forward: logits only where a token is scored, and the prompt prefix all rows share run once.

A chat example's loss reads the logits of its answer tokens alone (about 40% of a SmolLM2 training
row: the system prompt and the question carry no label), yet a causal LM computes the vocabulary
projection, and the trainer its softmax, at every position. For a small model the head is a large
share of the work (SmolLM2-135M: 28M of its 135M weights, over a 49,152-token vocabulary): on 2 CPU
cores a LoRA step at 8 x 75 tokens took 1.9 s instead of 3.1 s with the head restricted to the
scored positions (`benchmarks/bench_step.py`).

The restriction is a forward pre-hook on the model's own output embedding, so whatever the model
does after its head (Gemma's logit soft-capping, a logit scale) still applies, element by element.
The loss is the one transformers computes: the sum of token cross-entropies over the scored positions
divided by `num_items_in_batch` (the Trainer's count over the whole accumulated batch), or their mean.

Every row of a chat batch starts with the same tokens (SmolLM2's system prompt and user header: 27 of
about 71 tokens of a bundled domain example). Those run once, for one row, with their keys and values
kept; each row's own tokens then attend to that cache, repeated for the batch. Gradients flow through
the repeat (each row's share adds up), so the loss and its gradient are those of the full batch, for
about a third less compute. Caches of other kinds (sliding windows) and gradient checkpointing take the
plain forward.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from forgetless.train.data import IGNORE_INDEX


@dataclass
class ScoredOutputs:
    """A forward's logits at the scored positions only: `logits` (N, V) are `full_logits[:, :-1][where]`."""

    logits: Tensor  # (N, V), in the row-major order of `where`
    where: Tensor  # (B, T-1) bool: position t predicts a label t+1 (labels != -100, as transformers' loss counts)


def output_head(model: nn.Module) -> nn.Module | None:
    """The module that maps hidden states to vocabulary logits (None when the model has no such module)."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    return head if isinstance(head, nn.Module) else None


@contextmanager
def logits_at(model: nn.Module, where: Tensor) -> Iterator[None]:
    """Inside, a forward of `model` returns logits (N, V) for the positions in `where` (B, T-1) alone."""
    head = output_head(model)
    if head is None:
        raise ValueError("the model has no output embedding to restrict")

    def select(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        hidden = args[0]  # (B, T, H)
        return (hidden[:, :-1][where], *args[1:])  # (N, H)

    handle = head.register_forward_pre_hook(select)
    try:
        yield
    finally:
        handle.remove()


def labelled_positions(labels: Tensor) -> Tensor:
    """(B, T) labels -> (B, T-1) bool: position t predicts a label t+1 (every label, as transformers' loss counts)."""
    return labels[:, 1:] != IGNORE_INDEX


def rows_of(where: Tensor, rows: Tensor) -> Tensor:
    """(N,) bool over the logits selected by `where` (B, T-1), row-major: those of the rows in `rows` (B,)."""
    return rows[:, None].expand_as(where)[where]


def shared_prefix(ids: Tensor, mask: Tensor, where: Tensor) -> int:
    """Leading tokens that every row has (unpadded), ending before the first scored position."""
    same = (ids == ids[:1]).all(0) & mask.bool().all(0)  # (T,)
    n = int(same.long().cumprod(0).sum())
    scored = where.any(0).nonzero()
    first = int(scored[0]) if len(scored) else ids.shape[1] - 1
    return min(n, first)


def _prefix_cache(model: nn.Module, head: Tensor, rows: int) -> Any:
    """The KV cache of `head` (1, P), repeated for `rows` rows; None for a cache that is not plain."""
    from forgetless.eval.decode import CACHE, is_plain_cache

    cache = getattr(model(input_ids=head, use_cache=True, logits_to_keep=1), CACHE)
    if not is_plain_cache(cache):
        return None
    cache.batch_repeat_interleave(rows)
    return cache


def _checkpointing(model: nn.Module) -> bool:
    """Activation checkpointing is on (it recomputes the forward, so it keeps no cache to share)."""
    if hasattr(model, "is_activation_checkpointing"):  # the name since transformers 5.x; the old one warns
        return bool(model.is_activation_checkpointing)
    return bool(getattr(model, "is_gradient_checkpointing", False))


def scored_forward(model: nn.Module, batch: dict[str, Tensor]) -> ScoredOutputs:
    """Forward `input_ids`/`attention_mask` of `batch` (right-padded), with logits at its scored positions only;
    the shared prompt prefix runs once (see the module docstring)."""
    from forgetless.eval.decode import CACHE, MIN_SHARED_PREFIX

    ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    mask = torch.ones_like(ids) if mask is None else mask
    where = labelled_positions(batch["labels"])
    n = shared_prefix(ids, mask, where) if len(ids) > 1 and not _checkpointing(model) else 0
    cache = _prefix_cache(model, ids[:1, :n], len(ids)) if n >= MIN_SHARED_PREFIX else None
    if cache is None:
        with logits_at(model, where):
            return ScoredOutputs(logits=model(input_ids=ids, attention_mask=mask).logits, where=where)
    with logits_at(model, where[:, n:]):  # the rest's hidden states are positions n.. of the full batch
        logits = model(input_ids=ids[:, n:], attention_mask=mask, use_cache=True, **{CACHE: cache}).logits
    return ScoredOutputs(logits=logits, where=where)


def scored_cross_entropy(outputs: ScoredOutputs, labels: Tensor, num_items_in_batch: Any = None) -> Tensor:
    """transformers' causal-LM loss from scored logits: sum over labels / num_items_in_batch, else the mean."""
    targets = labels[:, 1:][outputs.where]  # (N,)
    if num_items_in_batch is None:
        return F.cross_entropy(outputs.logits.float(), targets) if targets.numel() else outputs.logits.sum() * 0.0
    total = F.cross_entropy(outputs.logits.float(), targets, reduction="sum")
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch
