"""The forgetting monitor: a `TrainerCallback` that measures forgetting while training runs.

Every `every` steps it evaluates a fixed probe subset of the general suite with the evaluation
engine (`forgetless.eval.evaluate`, the same settings as a run's evaluation) and reads the measures
that `compare` defines (`forgetless.compare.metrics.outcome`): multiple-choice accuracy by
log-likelihood (knowledge), the first `gen_items` of those questions asked openly (behaviour:
log-likelihood alone misses a model that still "knows" but answers everything in the domain's
template), and the mean per-token KL to the base model on those prompts with the base's replies and
on plain text. So the last point equals an evaluation of the final model on the same items. The
base model's numbers and log-probabilities (stored in bf16) are taken once, at step 0 (for LoRA:
the adapter disabled); no copy of the base stays in memory.

With a budget (`max_drop` on accuracy, `max_kl`) it keeps the last weights measured inside the
budget and, with `early_stop`, stops when the budget is exceeded and restores those weights.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from transformers import TrainerCallback

from forgetless.compare.metrics import mean_outcome
from forgetless.eval import EvalSettings, evaluate
from forgetless.eval.drift import token_kl
from forgetless.eval.prompts import encode_start
from forgetless.models.adapters import adapters_disabled
from forgetless.models.loading import LoadedModel
from forgetless.suites import Suite, load_suite


@dataclass
class MonitorPoint:
    step: int
    knowledge_acc: float  # mc accuracy by log-likelihood on the probes
    behaviour_acc: float  # the asked questions' open answers
    kl: float  # mean per-token KL(base || model) on the KL probes
    knowledge_drop: float
    behaviour_drop: float
    within_budget: bool
    seconds: float


@dataclass
class Probes:
    """The fixed probe subset of the general suite: mc items whose open twin is asked, the others, and texts."""

    asked: Suite
    closed: Suite
    kl_texts: list[str] = field(default_factory=list)


def select_probes(suite: str = "general", mc_items: int = 40, gen_items: int = 12, text_suite: str = "general-text",
                  text_items: int = 6) -> Probes:
    """An evenly spread, deterministic subset: every k-th item, so all categories are covered."""
    general = load_suite(suite)
    mc = general.by_type("mc")
    chosen = mc[:: max(1, len(mc) // max(1, mc_items))][:mc_items]
    texts = load_suite(text_suite).by_type("text") if text_items else []
    texts = texts[:: max(1, len(texts) // max(1, text_items))][:text_items]
    return Probes(asked=Suite(general.name, general.path, chosen[:gen_items]),
                  closed=Suite(general.name, general.path, chosen[gen_items:]), kl_texts=[t.text for t in texts])


def evaluate_probes(model: Any, tokenizer: Any, probes: Probes, settings: EvalSettings) -> list[Any]:
    """The probe items' results, as `evaluate` gives them (open twins only for `probes.asked`).

    The evaluation seeds torch; training's random state is kept as it was.
    """
    loaded = LoadedModel(model=model, tokenizer=tokenizer, spec="training", source="memory", path="")
    with torch.random.fork_rng(devices=[]):
        items = []
        for suite, open_ended in ((probes.asked, True), (probes.closed, False)):
            if len(suite):
                items += evaluate(loaded, [suite], settings=replace(settings, open_ended=open_ended)).items
    return items


class ForgettingMonitor(TrainerCallback):
    """Measures forgetting every `every` steps; see the module docstring."""

    def __init__(self, tokenizer: Any, probes: Probes, *, every: int = 50, max_drop: float | None = None,
                 max_kl: float | None = None, early_stop: bool = False, settings: EvalSettings | None = None,
                 baseline: dict[str, Any] | None = None):
        """`settings`: as the evaluation after training uses them (default: `EvalSettings()`). `baseline`: the
        `base` of an earlier monitor with the same probes and settings on the same base model (a study trains
        several strategies from one base): step 0 then costs nothing."""
        self.tok, self.probes, self.every = tokenizer, probes, every
        self.max_drop, self.max_kl, self.early_stop = max_drop, max_kl, early_stop
        self.settings = settings or EvalSettings()
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

    def _accuracies(self, model: Any) -> tuple[float, float, list[Any]]:
        items = evaluate_probes(model, self.tok, self.probes, self.settings)
        knowledge, behaviour = mean_outcome(items, "knowledge"), mean_outcome(items, "behaviour")
        return knowledge or 0.0, behaviour or 0.0, items

    @torch.no_grad()
    def _baseline(self, model: Any) -> None:
        with adapters_disabled(model):
            knowledge, behaviour, items = self._accuracies(model)
            self.base = {"knowledge": knowledge, "behaviour": behaviour,
                         "kl_sequences": [it.prompt + it.reply for it in items if it.reply is not None]
                         + self.probes.kl_texts}
            ids, mask = self._kl_batch(model)
            self.base["logits"] = model(input_ids=ids, attention_mask=mask).logits.to(torch.bfloat16).cpu()

    def measure_base(self, model: Any) -> float | None:
        """Measure the base model before training (what step 0 would do) and return the seconds it took: one
        check's cost, which a time budget counts for the checks to come. None when a baseline was given."""
        if self.base is not None:
            return None
        start = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            self._baseline(model)
        finally:
            model.train(was_training)
        seconds = time.perf_counter() - start
        self.seconds += seconds
        return seconds

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
