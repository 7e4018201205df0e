"""KL-to-base: keep the model's next-token distributions close to the base model's.

    penalty = beta * mean over positions of KL(p_base || p_model)
            = beta * mean_t sum_v p_base(v | x_<t) * (log p_base(v | x_<t) - log p_model(v | x_<t))

Positions: "labels" (default) are those that predict a scored token (labels != -100, shifted as
HF does, so logits[:, t] is compared where labels[:, t+1] is scored): the response tokens being
trained. "attention" uses every non-padding position, prompt included, which also keeps the
model's behaviour on prompts, at no extra cost.

Examples: "all" (default) compares every example of the batch. "general" compares only the
general (replay) examples, marked by the batch's `general` flags: averaged over the domain answers
too, the term pulls the very answers being learned back towards the base, while on general examples
it holds what should not change and leaves the domain free (Marek et al. 2026; Bansal & Sanghavi
2025). The base forward then runs on those rows alone.

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
from contextlib import nullcontext
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from forgetless.errors import ForgetlessError
from forgetless.eval.drift import token_kl
from forgetless.models.adapters import adapters_disabled, has_adapters
from forgetless.train.fisher import scored_positions
from forgetless.train.regularizers.base import REGULARIZERS, Batch, Regularizer, RegularizerConfig
from forgetless.train.scored import ScoredOutputs, labelled_positions, rows_of, scored_forward


class KLConfig(RegularizerConfig):
    """KL divergence from the base model's predictions."""

    weight_field: ClassVar[str] = "beta"
    section: ClassVar[str] = "regularizer.kl"

    beta: float = Field(0.1, ge=0, description="Penalty weight (beta >= 0); 0 turns the KL term off.")
    positions: Literal["labels", "attention"] = Field(
        "labels", description="Average over response positions (labels) or all non-padding positions (attention)."
    )
    examples: Literal["all", "general"] = Field(
        "all", description="Compare on every example (all), or only on the general (replay) examples (general): "
                           "the domain answers being learned are then not pulled back towards the base. "
                           "'general' needs replay.")
    top_k: int = Field(0, ge=0, description="0: the base model runs beside the trained one at every step. k > 0: "
                                            "the base's k most likely tokens at each compared position are computed "
                                            "once before training and the rest of its distribution kept as one tail "
                                            "bucket; no base forward while training (positions: labels only).")


def _logits(outputs: Any) -> Tensor:
    return outputs.logits if hasattr(outputs, "logits") else outputs


def kl_positions(batch: Batch, mode: str) -> tuple[Tensor, bool]:
    """(B, T') bool mask of the positions to compare, and whether logits must drop the last step."""
    mask = batch.get("attention_mask")
    if mode == "labels":
        return scored_positions(batch["labels"], mask), True
    return (mask.bool() if mask is not None else torch.ones_like(batch["input_ids"], dtype=torch.bool)), False


TARGET_BATCH = 8  # examples per forward when the top-k targets are computed


def topk_kl(logits: Tensor, ids: Tensor, logp: Tensor) -> Tensor:
    """Mean over positions of KL(p_base || p_model), p_base kept on its top-k tokens plus one tail bucket.

        KL_k = sum_{v in S} p(v) (log p(v) - log q(v)) + p_tail (log p_tail - log q_tail)

    logits (N, V) of the model; ids, logp (N, k): the base's top-k token ids S and their log-probabilities
    (normalized over the whole vocabulary). It is the KL between the two distributions merged outside S: never
    above the exact KL, equal to it once S holds all the base's mass (k = V).
    """
    lq_all = torch.log_softmax(logits.float(), -1)  # (N, V)
    ids = ids.long()
    lq = lq_all.gather(-1, ids)  # (N, k)
    log_q_tail = torch.logsumexp(lq_all.scatter(-1, ids, float("-inf")), -1).clamp(min=-69.0)  # log(1e-30)
    p = logp.float().exp()
    p_tail = (1 - p.sum(-1)).clamp(min=0)
    kl = (p * (logp.float() - lq)).sum(-1) + torch.xlogy(p_tail, p_tail) - p_tail * log_q_tail
    return kl.mean() if kl.numel() else logits.sum() * 0.0


def general_rows(batch: Batch) -> Tensor:
    """(B,) bool: the batch's general (replay) examples, from its `general` flags (none flagged: none)."""
    flags = batch.get("general")
    return flags.bool() if flags is not None else torch.zeros(batch["input_ids"].shape[0], dtype=torch.bool,
                                                               device=batch["input_ids"].device)


def mean_kl(base_logits: Tensor, logits: Tensor, where: Tensor | None) -> Tensor:
    """mean over selected positions of KL(softmax(base) || softmax(logits)); (B, T, V) x2, (B, T) bool,
    or logits already selected, (N, V) x2 with `where` None."""
    if where is not None:
        base_logits, logits = base_logits[where], logits[where]
    if base_logits.shape[0] == 0:
        return logits.sum() * 0.0  # nothing to compare; keeps the graph
    return token_kl(base_logits, logits).mean()


@REGULARIZERS.register("kl")
class KLToBase(Regularizer):
    name = "kl"
    config_class = KLConfig
    config: KLConfig

    def setup(self, model: nn.Module, *, reference_batches: Iterable[Batch] | None = None) -> None:
        self.base: nn.Module | None = None
        if self.config.top_k and self.config.positions != "labels":
            raise ForgetlessError("top_k needs positions: labels (targets are kept for the scored positions only)",
                                  where=self.config.section, hint="set positions: labels, or top_k: 0")
        if not has_adapters(model) and not self.config.top_k:  # full fine-tuning: freeze a copy of the start
            self.base = copy.deepcopy(model).eval().requires_grad_(False)
        self.ready = True

    @torch.no_grad()
    def prepare_examples(self, model: nn.Module, examples: list[dict[str, Any]], collate: Any) -> None:
        """With top_k: attach the base's top-k targets to each training example in scope (`kl_ids`, `kl_logp`,
        (n_scored, k) each). Called before the first step, while `model` still computes the base."""
        if not self.config.top_k:
            return
        chosen = [e for e in examples if self.config.examples == "all" or e.get("general")]
        key = lambda e: (tuple(e["input_ids"]), tuple(e["labels"]))  # noqa: E731 - labels fix the scored positions
        unique = list({key(e): e for e in chosen}.values())
        device = next(model.parameters()).device
        targets: dict[tuple[int, ...], tuple[Tensor, Tensor]] = {}
        was_training = model.training
        model.eval()
        try:
            for i in range(0, len(unique), TARGET_BATCH):
                part = unique[i:i + TARGET_BATCH]
                batch = {k: v.to(device) for k, v in collate([{k: e[k] for k in ("input_ids", "labels")}
                                                               for e in part]).items()}
                with adapters_disabled(model) if has_adapters(model) else nullcontext():
                    out = scored_forward(model, batch)
                logp, ids = torch.log_softmax(out.logits.float(), -1).topk(self.config.top_k, -1)
                for e, rows in zip(part, torch.split(torch.arange(len(ids)), out.where.sum(1).tolist())):
                    targets[key(e)] = (ids[rows].to("cpu", torch.int32), logp[rows].cpu())
        finally:
            model.train(was_training)
        for e in chosen:
            e["kl_ids"], e["kl_logp"] = targets[key(e)]

    def prepare(self, accelerator: Any) -> None:
        if self.base is not None:  # the trained model's forward runs under the accelerator's autocast: so must this
            self.base = accelerator.prepare_model(self.base, evaluation_mode=True)

    def _topk_penalty(self, batch: Batch, logits: Tensor, scored: Tensor | None) -> Tensor:
        """The KL against the precomputed targets of the rows in scope (their scored positions, row-major)."""
        if "kl_ids" not in batch:
            if self.config.examples == "general" and not bool(general_rows(batch).any()):
                return logits.sum() * 0.0
            raise ForgetlessError("kl top_k: the batch carries no precomputed targets", where=self.config.section,
                                  hint="train with forgetless (its recipe attaches them), or set top_k: 0")
        rows = general_rows(batch) if self.config.examples == "general" else torch.ones(
            batch["input_ids"].shape[0], dtype=torch.bool, device=logits.device)
        if scored is None:  # full logits (B, T, V): the labelled positions of the rows in scope, as the targets
            scored = labelled_positions(batch["labels"])
            chosen = logits[:, :-1][scored & rows[:, None]]
        else:
            chosen = logits[rows_of(scored, rows)]
        ids, logp = batch["kl_ids"], batch["kl_logp"]
        if chosen.shape[0] != ids.shape[0]:
            raise ForgetlessError(f"kl top_k: {ids.shape[0]} precomputed positions for {chosen.shape[0]} scored ones",
                                  where=self.config.section, hint="the targets were made for other examples")
        return topk_kl(chosen, ids, logp)

    @property
    def reads_scored_logits(self) -> bool:  # type: ignore[override]
        return self.config.positions == "labels"  # "attention" compares prompt positions too

    @torch.no_grad()
    def base_logits(self, model: nn.Module, batch: Batch, scored: bool = False) -> Tensor:
        """The base model's logits on `batch`: (B, T, V), or with `scored` (N, V) at its scored positions."""
        net = self.base if self.base is not None else model
        with adapters_disabled(model) if self.base is None else nullcontext():
            if scored:
                return scored_forward(net, batch).logits
            return _logits(net(**{k: batch[k] for k in ("input_ids", "attention_mask") if k in batch}))

    def penalty(self, model: nn.Module, batch: Batch | None = None, outputs: Any = None) -> Tensor:
        self._require_setup()
        if batch is None:
            raise ForgetlessError("the kl regularizer needs the batch", where=self.config.section)
        if outputs is None:
            outputs = model(**{k: batch[k] for k in ("input_ids", "attention_mask") if k in batch})
        logits = _logits(outputs)
        scored = outputs.where if isinstance(outputs, ScoredOutputs) else None  # logits (N, V) at scored positions
        if self.config.top_k:
            return self.config.weight * self._topk_penalty(batch, logits, scored)
        if self.config.examples == "general":  # the domain rows are left free: no base forward for them either
            rows = general_rows(batch)
            if not bool(rows.any()):
                return logits.sum() * 0.0
            batch = {k: v[rows] for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")}
            if scored is not None:
                logits, scored = logits[rows_of(scored, rows)], scored[rows]
            else:
                logits = logits[rows]
        if scored is not None:  # positions "labels": kl_positions' mask is `scored` less labels predicted from padding
            pick = kl_positions(batch, "labels")[0][scored]  # (N,) over the scored logits
            return self.config.weight * mean_kl(self.base_logits(model, batch, scored=True)[pick], logits[pick], None)
        where, shifted = kl_positions(batch, self.config.positions)
        base = self.base_logits(model, batch)
        if shifted:
            logits, base = logits[:, :-1], base[:, :-1]
        return self.config.weight * mean_kl(base, logits, where)
