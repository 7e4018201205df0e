"""One pipeline for `forgetless run` and each strategy of `forgetless demo`:
train -> evaluate the fine-tuned model -> compare it with the base's evaluation.

The evaluation choices are made here once, so a run and a study strategy with the same config give
the same numbers: the suites and settings, the KL reference (`run_reference`: a LoRA adapter
switched off, or the base model a full fine-tune recorded), the adapter kept unmerged, and which
suite holds the held-out domain questions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgetless.compare import ForgettingReport, compare
from forgetless.eval import EvalResult, EvalSettings, evaluate, run_reference
from forgetless.io import atomic_write_json
from forgetless.models import load_model
from forgetless.models.loading import LoadedModel
from forgetless.suites import Suite

Progress = Callable[[str, int, int], None]
Notify = Callable[[str], None]


@dataclass(frozen=True)
class Evaluation:
    """What every model of a run or study is scored on, and how its drops are judged."""

    suites: list[Suite]
    settings: EvalSettings = field(default_factory=EvalSettings)
    threshold: float = 0.05  # a general drop at least this large is forgetting
    domain: str | None = None  # the name of the held-out domain suite (one of `suites`), if any


@dataclass
class Outcome:
    """One fine-tune, evaluated and compared; `tuned` stays loaded for a recovery sweep (the caller frees it)."""

    trained: Any  # forgetless.train.TrainResult
    tuned: LoadedModel
    after: EvalResult
    report: ForgettingReport
    seconds: dict[str, float]


def evaluate_base(model: str | LoadedModel, evaluation: Evaluation, out: Path,
                  progress: Progress | None = None) -> tuple[LoadedModel, EvalResult]:
    """The base model, loaded, and its evaluation, saved as OUT/before.json."""
    base = model if isinstance(model, LoadedModel) else load_model(model)
    before = evaluate(base, evaluation.suites, settings=evaluation.settings, progress=progress)
    before.save(out / "before.json")
    return base, before


def train_and_compare(config: Any, before: EvalResult, evaluation: Evaluation, out: Path, *,
                      progress: Progress | None = None, notify: Notify | None = None, train_progress: bool = False,
                      monitor_baseline: dict[str, Any] | None = None) -> Outcome:
    """Train `config` (a `TrainConfig`), evaluate the result like the base, compare: OUT/after.json and
    OUT/compare.json."""
    from forgetless.train import train

    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    trained = train(config, progress=train_progress, notify=notify, monitor_baseline=monitor_baseline)
    seconds["train"] = time.perf_counter() - clock

    clock = time.perf_counter()
    if notify:
        notify("evaluating the fine-tuned model")
    tuned = load_model(str(trained.run_dir))
    after = evaluate(tuned, evaluation.suites, reference=run_reference(tuned), settings=evaluation.settings,
                     progress=progress)
    after.save(out / "after.json")
    seconds["evaluate_after"] = time.perf_counter() - clock

    report = compare(before, after, threshold=evaluation.threshold, training_data=config.data,
                     domain_suites=[evaluation.domain] if evaluation.domain else None)
    atomic_write_json(out / "compare.json", report.model_dump(mode="json"))
    return Outcome(trained=trained, tuned=tuned, after=after, report=report, seconds=seconds)
