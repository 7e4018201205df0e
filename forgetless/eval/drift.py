"""Cheap drift signals: per-token KL(reference || model) and perplexity on plain text.

When the model is a PEFT adapter on the reference, the reference distribution comes from the same
weights with the adapter disabled, so no second copy of the model is held in memory.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from forgetless.eval.prompts import encode_start
from forgetless.models.adapters import adapters_disabled


@dataclass
class TextScore:
    tokens: int  # predicted tokens (all but the first)
    nll: float  # mean negative log-likelihood per predicted token
    kl: float | None  # mean per-token KL(reference || model), None without a reference

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll)


def token_kl(ref_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(p_ref || p) per position: sum_v p_ref(v) (log p_ref(v) - log p(v)). Shapes (..., V) -> (...)."""
    ref_logp = F.log_softmax(ref_logits.float(), dim=-1)
    logp = F.log_softmax(logits.float(), dim=-1)
    return (ref_logp.exp() * (ref_logp - logp)).sum(-1)


@torch.no_grad()
def score_texts(model: Any, tokenizer: Any, texts: Sequence[str], *, reference: Any | None = None,
                reference_is_base: bool = False, batch_size: int = 8, max_length: int = 512,
                on_batch: Callable[[int], None] | None = None) -> list[TextScore]:
    """NLL per token for each text and, with a reference (or `reference_is_base` for adapters), KL to it."""
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tokens = [encode_start(tokenizer, t)[:max_length] for t in texts]
    scores: list[TextScore | None] = [None] * len(texts)
    order = sorted(range(len(texts)), key=lambda i: (-len(tokens[i]), i))
    for b in range(0, len(order), batch_size):
        idx = order[b: b + batch_size]
        width = max(len(tokens[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long, device=device)
        mask = torch.zeros((len(idx), width), dtype=torch.long, device=device)
        for row, i in enumerate(idx):
            ids[row, : len(tokens[i])] = torch.tensor(tokens[i], device=device)
            mask[row, : len(tokens[i])] = 1
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        targets, valid = ids[:, 1:], mask[:, 1:].float()
        nll = -F.log_softmax(logits.float(), dim=-1).gather(2, targets[..., None]).squeeze(2)
        kl = None
        if reference is not None or reference_is_base:
            ref_model = model if reference is None else reference
            with adapters_disabled(model) if reference is None else contextlib.nullcontext():
                ref_logits = ref_model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            kl = token_kl(ref_logits, logits)
        for row, i in enumerate(idx):
            n = valid[row].sum().clamp(min=1)
            scores[i] = TextScore(tokens=int(valid[row].sum().item()),
                                  nll=float((nll[row] * valid[row]).sum() / n),
                                  kl=None if kl is None else float((kl[row] * valid[row]).sum() / n))
        if on_batch:
            on_batch(len(idx))
    return scores  # type: ignore[return-value]
