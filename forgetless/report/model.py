"""What a report shows: one `ReportData`, filled from a comparison, a strategy study or a recovery sweep.

Units: accuracies and drops are fractions (0.05 = 5 percentage points); `drop = before - after`, so a
positive drop is forgetting and a positive gain is learning. Every section is optional: the HTML and
Markdown show what is there and leave the rest out.

    data = ReportData.from_comparison(report, title="Support bot v3")
    data = ReportData(title="Strategy study", strategies=[StrategyRow.from_comparison("lora", r, curve=pts)])
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, is_dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from forgetless.compare.schema import (
    Comparison,
    ForgettingReport,
    MetricReport,
    Recommendation,
    Verdict,
)

REPORT_DATA_VERSION = 1


class Estimate(BaseModel):
    """A number with its confidence interval and p-value, any of which may be unknown."""

    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    n: int | None = None
    unit: str = "accuracy"  # "accuracy" (a fraction, shown in percentage points) or e.g. "nats"

    @classmethod
    def drop_of(cls, c: Comparison, unit: str = "accuracy") -> Estimate:
        return cls(value=c.drop, ci_low=c.ci_low, ci_high=c.ci_high, p_value=c.p_adjusted, n=c.n, unit=unit)

    @classmethod
    def gain_of(cls, c: Comparison, unit: str = "accuracy") -> Estimate:
        """The negated drop: what the model learned (for domain suites)."""
        return cls(value=-c.drop, ci_low=-c.ci_high, ci_high=-c.ci_low, p_value=c.p_adjusted, n=c.n, unit=unit)


class CurvePoint(BaseModel):
    """One measurement of the training monitor (`forgetless.train.monitor.MonitorPoint` plugs in as is)."""

    model_config = ConfigDict(extra="ignore")

    step: int
    knowledge_acc: float | None = None
    behaviour_acc: float | None = None
    kl: float | None = None
    knowledge_drop: float | None = None
    behaviour_drop: float | None = None
    within_budget: bool | None = None

    @field_validator("knowledge_acc", "behaviour_acc", "kl", "knowledge_drop", "behaviour_drop", mode="before")
    @classmethod
    def _nan_to_none(cls, v: Any) -> Any:
        return None if isinstance(v, float) and math.isnan(v) else v


class CategoryScore(BaseModel):
    name: str
    before: float | None = None
    after: float | None = None


def _curve(points: list[Any]) -> list[CurvePoint]:
    return [CurvePoint.model_validate(asdict(p) if is_dataclass(p) else p) for p in points]


def _category_scores(m: MetricReport | None) -> list[CategoryScore]:
    return [CategoryScore(name=c.label, before=c.before, after=c.after) for c in m.categories] if m else []


class StrategyRow(BaseModel):
    """One training strategy of a study: what it learned, what it forgot, and how to run it again."""

    name: str
    description: str = ""
    domain_gain: Estimate | None = None
    knowledge_drop: Estimate | None = None  # general multiple-choice accuracy, before - after
    behaviour_drop: Estimate | None = None  # the same questions answered openly
    checklist_before: float | None = None  # pass rate
    checklist_after: float | None = None
    template_copy_before: float | None = None  # share of general replies copying the training responses' phrasing
    template_copy_after: float | None = None
    kl: float | None = None  # mean per-token KL(base || tuned) on general text
    verdict: Verdict | None = None
    curve: list[CurvePoint] = Field(default_factory=list)
    categories: list[CategoryScore] = Field(default_factory=list)  # general knowledge by category
    command: str | None = None
    config: str | None = None  # YAML text
    seconds: float | None = None

    @field_validator("curve", mode="before")
    @classmethod
    def _curve_points(cls, v: Any) -> Any:
        return _curve(list(v)) if isinstance(v, (list, tuple)) else v

    @classmethod
    def from_comparison(cls, name: str, report: ForgettingReport, **fields: Any) -> StrategyRow:
        """Numbers from a strategy's `ForgettingReport`; `fields` (curve, command, config, ...) add to them."""
        know, beh, chk, text = (report.metric(n) for n in ("knowledge", "behaviour", "checklist", "text"))
        domain = report.domain_metric()
        copies = report.diagnosis.template_collapse if report.diagnosis else None
        values: dict[str, Any] = {
            "name": name, "verdict": report.verdict,
            "domain_gain": Estimate.gain_of(domain.overall, _unit(domain)) if domain else None,
            "knowledge_drop": Estimate.drop_of(know.overall) if know else None,
            "behaviour_drop": Estimate.drop_of(beh.overall) if beh else None,
            "checklist_before": chk.overall.before if chk else None,
            "checklist_after": chk.overall.after if chk else None,
            "template_copy_before": copies.share_before if copies else None,
            "template_copy_after": copies.share_after if copies else None,
            "kl": text.kl.mean if text and text.kl else None,
            "categories": _category_scores(know),
        }
        return cls(**(values | fields))


def _unit(m: MetricReport) -> str:
    return "nats" if m.metric == "text" else "accuracy"


class SweepRow(BaseModel):
    """One interpolation weight of the recovery sweep (alpha = 1: the fine-tuned model, 0: the base)."""

    alpha: float
    domain_gain: Estimate | None = None
    general_drop: Estimate | None = None
    within_budget: bool | None = None


class Sweep(BaseModel):
    rows: list[SweepRow] = Field(default_factory=list)
    chosen_alpha: float | None = None
    budget: float | None = None  # the largest tolerated general drop
    description: str = ""

    @classmethod
    def from_sweep(cls, result: Any, description: str = "") -> Sweep:
        """From a `forgetless.merge.SweepResult`: per alpha, the domain gain and the general drop, the worse
        of knowledge and behaviour (its CI: the larger lower end up to the worst upper end the budget judges)."""
        rows = []
        for r in result.rows:
            drops = [d for d in (r.knowledge_drop, r.behaviour_drop) if d is not None]
            cis = [c for c in (r.knowledge_ci, r.behaviour_ci) if c is not None]
            gain_ci = r.domain_gain_ci or (None, None)
            rows.append(SweepRow(
                alpha=r.alpha, within_budget=r.within_budget,
                domain_gain=Estimate(value=r.domain_gain, ci_low=gain_ci[0], ci_high=gain_ci[1]),
                general_drop=Estimate(value=max(drops) if drops else None,
                                      ci_low=max(c[0] for c in cis) if cis else None, ci_high=r.general_drop_high)))
        return cls(rows=rows, chosen_alpha=result.chosen, budget=result.budget,
                   description=f"{description}: {result.reason}" if description else result.reason)


class Sample(BaseModel):
    """One question with the reply before and after fine-tuning."""

    question: str
    before: str | None = None
    after: str | None = None
    expected: str | None = None
    label: str = ""  # item id or strategy name
    note: str = ""  # e.g. "lost", "still right"


class Reproduce(BaseModel):
    commands: list[str] = Field(default_factory=list)
    configs: dict[str, str] = Field(default_factory=dict)  # file name -> YAML text


class ReportData(BaseModel):
    """Everything one report shows. Build it directly, or with `from_comparison`."""

    format_version: int = REPORT_DATA_VERSION
    title: str = "Forgetting report"
    subtitle: str = ""
    model: str | None = None
    date: str | None = None
    machine: str | None = None
    verdict: Verdict | None = None  # the banner; default: the comparison's, else the recommended strategy's
    headline: str | None = None
    budget: float | None = None  # the largest tolerated general drop (compare's threshold)
    strategies: list[StrategyRow] = Field(default_factory=list)
    recommended: str | None = None  # name of the strategy the study recommends
    comparison: ForgettingReport | None = None
    curve: list[CurvePoint] = Field(default_factory=list)  # one run's monitor (with `comparison`)
    sweep: Sweep | None = None
    samples: list[Sample] = Field(default_factory=list)
    recommendations: list[Recommendation] = Field(default_factory=list)
    reproduce: Reproduce = Field(default_factory=Reproduce)
    timings: dict[str, float] = Field(default_factory=dict)  # what -> seconds
    notes: list[str] = Field(default_factory=list)

    @field_validator("curve", mode="before")
    @classmethod
    def _curve_points(cls, v: Any) -> Any:
        return _curve(list(v)) if isinstance(v, (list, tuple)) else v

    @classmethod
    def from_comparison(cls, report: ForgettingReport, *, title: str = "Forgetting report",
                        reproduce: Reproduce | dict[str, Any] | None = None, **fields: Any) -> ReportData:
        """A before/after report: the comparison, its lost items as samples and its recommendations."""
        samples = [Sample(question=question_text(e.prompt), before=e.answer_before, after=e.answer_after,
                          expected=e.expected, label=e.key, note=f"{e.metric}: lost")
                   for e in report.lost_examples]
        values: dict[str, Any] = {
            "title": title, "model": str(report.after.model.get("spec", "")) or None,
            "comparison": report, "samples": samples, "recommendations": list(report.recommendations),
            "budget": report.threshold,
            "reproduce": Reproduce.model_validate(reproduce) if reproduce is not None else Reproduce(),
        }
        return cls(**(values | fields))

    @property
    def banner_verdict(self) -> Verdict | None:
        if self.verdict:
            return self.verdict
        if self.comparison is not None:
            return self.comparison.verdict
        chosen = self.strategy(self.recommended)
        return chosen.verdict if chosen else None

    @property
    def banner_headline(self) -> str:
        if self.headline:
            return self.headline
        if self.comparison is not None:
            return self.comparison.headline
        return f"recommended strategy: {self.recommended}" if self.recommended else ""

    def strategy(self, name: str | None) -> StrategyRow | None:
        return next((s for s in self.strategies if s.name == name), None)

    def to_json(self) -> str:
        return self.model_dump_json(indent=1) + "\n"


_CHAT_USER = re.compile(r"(?:<\|im_start\|>user|<\|start_header_id\|>user<\|end_header_id\|>|\[INST\])\s*(.*?)"
                        r"\s*(?:<\|im_end\|>|<\|eot_id\|>|\[/INST\]|$)", re.DOTALL)


def question_text(prompt: str) -> str:
    """The last user turn of a chat-formatted prompt (the prompt itself when it is not chat-formatted)."""
    turns = _CHAT_USER.findall(prompt)
    return turns[-1].strip() if turns and turns[-1].strip() else prompt.strip()
