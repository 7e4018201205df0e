"""KL-to-base: keep the model's next-token distributions close to the base model's.

    penalty = beta * mean over positions of KL(p_base || p_model)
            = beta * mean_t sum_v p_base(v | x_<t) * (log p_base(v | x_<t) - log p_model(v | x_<t))

Positions: "labels" (default) are those that predict a scored token (labels != -100, shifted as
HF does, so logits[:, t] is compared where labels[:, t+1] is scored): the response tokens being
trained. "attention" uses every non-padding position, prompt included, which also keeps the
model's behaviour on prompts, at no extra cost.

The base distribution:
- PEFT/LoRA model: the same model with its adapters switched off, under torch.no_grad(); no copy.
- full fine-tuning: a frozen deep copy of the model made at setup. Memory cost: one more full
  model copy (weights only; it never holds gradients or optimizer state).
Pass `outputs` (the task forward's output or its logits) to avoid a second forward of the model.
The base forward runs like the model's (same mode, same autocast); models with dropout add noise
to both.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from forgetless.errors import ForgetlessError
from forgetless.train.fisher import scored_positions
from forgetless.train.regularizers.base import REGULARIZERS, Batch, Regularizer, RegularizerConfig
from forgetless.train.regularizers.lora import adapters_disabled, has_adapters


class KLConfig(RegularizerConfig):
    """KL divergence from the base model's predictions."""

    weight_field: ClassVar[str] = "beta"
    section: ClassVar[str] = "regularizer.kl"

    beta: float = Field(0.1, ge=0, description="Penalty weight (beta >= 0); 0 turns the KL term off.")
    positions: Literal["labels", "attention"] = Field(
        "labels", description="Average over response positions (labels) or all non-padding positions (attention)."
    )


def _logits(outputs: Any) -> Tensor:
    return outputs.logits if hasattr(outputs, "logits") else outputs


def kl_positions(batch: Batch, mode: str) -> tuple[Tensor, bool]:
    """(B, T') bool mask of the positions to compare, and whether logits must drop the last step."""
    mask = batch.get("attention_mask")
    if mode == "labels":
        return scored_positions(batch["labels"], mask), True
    return (mask.bool() if mask is not None else torch.ones_like(batch["input_ids"], dtype=torch.bool)), False


def mean_kl(base_logits: Tensor, logits: Tensor, where: Tensor) -> Tensor:
    """mean over selected positions of KL(softmax(base) || softmax(logits)); (B, T, V) x2, (B, T) bool."""
    base_logp = torch.log_softmax(base_logits[where].float(), -1)  # (N, V)
    logp = torch.log_softmax(logits[where].float(), -1)
    if base_logp.shape[0] == 0:
        return logits.sum() * 0.0  # nothing to compare; keeps the graph
    return (base_logp.exp() * (base_logp - logp)).sum(-1).mean()


@REGULARIZERS.register("kl")
class KLToBase(Regularizer):
    name = "kl"
    config_class = KLConfig
    config: KLConfig

    def setup(self, model: nn.Module, *, reference_batches: Iterable[Batch] | None = None) -> None:
        self.base: nn.Module | None = None
        if not has_adapters(model):  # full fine-tuning: freeze a copy of the starting model
            self.base = copy.deepcopy(model).eval().requires_grad_(False)
        self.ready = True

    def prepare(self, accelerator: Any) -> None:
        if self.base is not None:  # the trained model's forward runs under the accelerator's autocast: so must this
            self.base = accelerator.prepare_model(self.base, evaluation_mode=True)

    @torch.no_grad()
    def base_logits(self, model: nn.Module, batch: Batch) -> Tensor:
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask") if k in batch}
        if self.base is not None:
            return _logits(self.base(**inputs))
        with adapters_disabled(model):
            return _logits(model(**inputs))

    def penalty(self, model: nn.Module, batch: Batch | None = None, outputs: Any = None) -> Tensor:
        self._require_setup()
        if batch is None:
            raise ForgetlessError("the kl regularizer needs the batch", where=self.config.section)
        if outputs is None:
            outputs = model(**{k: batch[k] for k in ("input_ids", "attention_mask") if k in batch})
        logits = _logits(outputs)
        where, shifted = kl_positions(batch, self.config.positions)
        base = self.base_logits(model, batch)
        if shifted:
            logits, base = logits[:, :-1], base[:, :-1]
        return self.config.weight * mean_kl(base, logits, where)
