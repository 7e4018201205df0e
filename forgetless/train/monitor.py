"""The forgetting monitor: a `TrainerCallback` that measures forgetting while training runs.

Every `every` steps it scores a fixed probe subset of the general suite: multiple-choice accuracy
by log-likelihood (knowledge), the same questions asked openly (behaviour: log-likelihood alone
misses a model that still "knows" but answers everything in the domain's template), and the mean
per-token KL to the base model on chat-formatted general prompts and plain text. The base model's
numbers and log-probabilities (stored in bf16) are taken once, at step 0 (for LoRA: the adapter
disabled).

With a budget (`max_drop` on accuracy, `max_kl`) it keeps the last weights measured inside the
budget and, with `early_stop`, stops when the budget is exceeded and restores those weights.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from transformers import TrainerCallback

from forgetless.eval.drift import token_kl
from forgetless.eval.generate import greedy_generate
from forgetless.eval.loglik import score_multiple_choice
from forgetless.eval.prompts import encode_start, render_prompt
from forgetless.models.adapters import adapters_disabled
from forgetless.suites import load_suite


@dataclass
class MonitorPoint:
    step: int
    knowledge_acc: float  # mc accuracy by log-likelihood on the probes
    behaviour_acc: float  # the same questions asked openly
    kl: float  # mean per-token KL(base || model) on the KL probes
    knowledge_drop: float
    behaviour_drop: float
    within_budget: bool
    seconds: float


@dataclass
class Probes:
    """The fixed probe subset, rendered once."""

    contexts: list[str]
    choices: list[list[str]]
    answers: list[int]
    open_items: list[Any]  # McItems whose open-ended twin is asked
    kl_texts: list[str] = field(default_factory=list)


def select_probes(tokenizer: Any, suite: str = "general", mc_items: int = 40, gen_items: int = 12,
                  text_suite: str = "general-text", text_items: int = 6) -> Probes:
    """An evenly spread, deterministic subset: every k-th item, so all categories are covered."""
    mc = load_suite(suite).by_type("mc")
    chosen = mc[:: max(1, len(mc) // max(1, mc_items))][:mc_items]
    texts = load_suite(text_suite).by_type("text") if text_items else []
    texts = texts[:: max(1, len(texts) // max(1, text_items))][:text_items]
    return Probes(contexts=[render_prompt(tokenizer, it.question) for it in chosen],
                  choices=[list(it.choices) for it in chosen], answers=[it.answer for it in chosen],
                  open_items=chosen[:gen_items], kl_texts=[t.text for t in texts])


class ForgettingMonitor(TrainerCallback):
    """Measures forgetting every `every` steps; see the module docstring."""

    def __init__(self, tokenizer: Any, probes: Probes, *, every: int = 50, max_drop: float | None = None,
                 max_kl: float | None = None, early_stop: bool = False, batch_size: int = 64,
                 max_new_tokens: int = 24, baseline: dict[str, Any] | None = None):
        """`baseline`: the `base` of an earlier monitor with the same probes on the same base model (a
        study trains several strategies from one base): step 0 then costs nothing."""
        self.tok, self.probes, self.every = tokenizer, probes, every
        self.max_drop, self.max_kl, self.early_stop = max_drop, max_kl, early_stop
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.points: list[MonitorPoint] = []
        self.base: dict[str, Any] | None = baseline
        self.best: dict[str, torch.Tensor] | None = None
        self.best_step: int | None = None
        self.stopped_at: int | None = None
        self.seconds = 0.0

    # --- measuring -------------------------------------------------------------------------------

    def _kl_batch(self, model: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (right-padded) and mask of the KL probes: chat prompts + base replies, and text."""
        rows = [encode_start(self.tok, t)[:256] for t in self.base["kl_sequences"]]
        width = max(len(r) for r in rows)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        device = next(model.parameters()).device
        return ids.to(device), mask.to(device)

    @torch.no_grad()
    def _accuracies(self, model: Any) -> tuple[float, float, list[str]]:
        p = self.probes
        scores = score_multiple_choice(model, self.tok, p.contexts, p.choices, batch_size=self.batch_size)
        knowledge = sum(s.pred == a for s, a in zip(scores, p.answers)) / max(1, len(p.answers))
        replies = greedy_generate(model, self.tok, p.contexts[: len(p.open_items)], max_new_tokens=self.max_new_tokens,
                                  batch_size=self.batch_size)
        behaviour = sum(it.is_correct_open(r) for it, r in zip(p.open_items, replies)) / max(1, len(p.open_items))
        return knowledge, behaviour, replies

    @torch.no_grad()
    def _baseline(self, model: Any) -> None:
        with adapters_disabled(model):
            knowledge, behaviour, replies = self._accuracies(model)
            self.base = {"knowledge": knowledge, "behaviour": behaviour,
                         "kl_sequences": [c + r for c, r in zip(self.probes.contexts, replies)] + self.probes.kl_texts}
            ids, mask = self._kl_batch(model)
            self.base["logits"] = model(input_ids=ids, attention_mask=mask).logits.to(torch.bfloat16).cpu()

    @torch.no_grad()
    def _kl(self, model: Any) -> float:
        ids, mask = self._kl_batch(model)
        logits = model(input_ids=ids, attention_mask=mask).logits
        kl = token_kl(self.base["logits"].to(logits.device, torch.float32), logits)
        return float((kl * mask).sum() / mask.sum())

    def measure(self, model: Any, step: int) -> MonitorPoint:
        start = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            if not self.points:  # the first measurement is the base model itself: KL 0 by definition
                if self.base is None:
                    self._baseline(model)
                knowledge, behaviour, kl = self.base["knowledge"], self.base["behaviour"], 0.0
            else:
                knowledge, behaviour, _ = self._accuracies(model)
                kl = self._kl(model)
        finally:
            model.train(was_training)
        k_drop, b_drop = self.base["knowledge"] - knowledge, self.base["behaviour"] - behaviour
        within = ((self.max_drop is None or max(k_drop, b_drop) <= self.max_drop)
                  and (self.max_kl is None or kl <= self.max_kl))
        seconds = time.perf_counter() - start
        self.seconds += seconds
        point = MonitorPoint(step=step, knowledge_acc=round(knowledge, 4), behaviour_acc=round(behaviour, 4),
                             kl=round(kl, 6), knowledge_drop=round(k_drop, 4), behaviour_drop=round(b_drop, 4),
                             within_budget=within, seconds=round(seconds, 2))
        self.points.append(point)
        return point

    # --- Trainer hooks ---------------------------------------------------------------------------

    def _record(self, state: Any, model: Any) -> MonitorPoint:
        point = self.measure(model, state.global_step)
        state.log_history.append({"step": point.step, **{f"monitor/{k}": v for k, v in asdict(point).items()
                                                         if k != "step"}})
        if point.within_budget and self.has_budget:
            self.best = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}
            self.best_step = point.step
        return point

    @property
    def has_budget(self) -> bool:
        return self.max_drop is not None or self.max_kl is not None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None and not self.points:
            self._record(state, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is None or state.global_step % self.every:
            return
        point = self._record(state, model)
        if not point.within_budget and self.early_stop:
            self.stopped_at = point.step
            control.should_training_stop = True

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if model is not None and self.stopped_at is not None and self.best is not None:
            with torch.no_grad():
                for name, param in model.named_parameters():
                    if name in self.best:
                        param.copy_(self.best[name].to(param.device))

    def summary(self) -> dict[str, Any]:
        return {"points": [asdict(p) for p in self.points], "seconds": round(self.seconds, 2),
                "best_step": self.best_step, "stopped_at": self.stopped_at,
                "budget": {"max_drop": self.max_drop, "max_kl": self.max_kl}}
