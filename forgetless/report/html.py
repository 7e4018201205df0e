"""The report as one self-contained HTML file (inline CSS and SVG, no JavaScript, no network).

`template.html` is a Jinja2 template with autoescaping on: every model reply, item id, category and
title is escaped there. The only values inserted unescaped (`|safe`) are the SVG charts, whose text
`svg.py` has already escaped.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from forgetless.compare.diagnosis import CELL_LABELS, KNOWS_SAYS_CELLS
from forgetless.compare.render import WORDS
from forgetless.compare.schema import Comparison, ForgettingReport, MetricReport
from forgetless.report import charts
from forgetless.report.fmt import (
    delta,
    estimate,
    estimate_ci,
    estimate_value,
    interval,
    num,
    ok,
    pct,
    points,
    pp,
    pval,
    score,
    seconds,
)
from forgetless.report.model import Estimate, ReportData, StrategyRow, question_text

ICONS = {"forgetting": "✕", "no_forgetting": "✓", "inconclusive": "?"}  # the verdict never relies on colour alone


# --- view -----------------------------------------------------------------------------------------


@dataclass
class KeyNumber:
    label: str
    value: str
    detail: str
    tone: str  # "good" | "bad" | "neutral"


def _drop_tone(e: Estimate | None, budget: float | None) -> str:
    """'bad' above the budget (0 without one), 'good' when even the interval's top is within it."""
    if e is None or not ok(e.value):
        return "neutral"
    limit = budget if budget is not None else 0.0
    if e.value > limit:
        return "bad"
    return "good" if ok(e.ci_high) and e.ci_high <= limit else "neutral"


def _gain_tone(e: Estimate | None) -> str:
    if e is None or not ok(e.value):
        return "neutral"
    return "good" if ok(e.ci_low) and e.ci_low > 0 else "bad" if e.value <= 0 else "neutral"


def _detail(e: Estimate | None, confidence: float) -> str:
    if e is None or not ok(e.value):
        return "not measured"
    parts = []
    if ok(e.ci_low) and ok(e.ci_high):
        parts.append(f"{confidence:.0%} CI {interval(e.ci_low, e.ci_high, e.unit)}")
    if ok(e.p_value):
        p = pval(e.p_value)
        parts.append(f"p {p}" if p.startswith("<") else f"p = {p}")
    if e.n:
        parts.append(f"n = {e.n}")
    return ", ".join(parts)


def key_caption(data: ReportData) -> str:
    """Whose numbers the cards show, in a study: the recommended strategy's, against the first (the unprotected
    aggressive one), or that first one's alone when none is recommended."""
    if data.comparison is not None or not data.strategies:
        return ""
    chosen, contrast = data.strategy(data.recommended), data.strategies[0]
    if chosen is None:
        return f"No strategy is recommended. The numbers below are {contrast.name}'s."
    if chosen is contrast:
        return f"The recommended strategy, {chosen.name}."
    return f"The recommended strategy, {chosen.name}; in each card's last line, {contrast.name} for contrast."


def key_numbers(data: ReportData) -> list[KeyNumber]:
    """The headline numbers: of the comparison, else of the recommended strategy against the first one
    (`key_caption` says whose they are)."""
    contrast = None
    if data.comparison is not None:
        row = StrategyRow.from_comparison("this run", data.comparison)
        confidence = data.comparison.confidence
    else:
        row = data.strategy(data.recommended) or (data.strategies[0] if data.strategies else None)
        contrast = data.strategies[0] if data.strategies and data.strategies[0] is not row else None
        confidence = 0.95
    if row is None:
        return []

    def versus(e: Estimate | None) -> str:
        if contrast is None:
            return ""
        return f" · {contrast.name}: {estimate(e).split(' [')[0] if e is not None else '-'}"

    out = [KeyNumber("Domain gain", estimate(row.domain_gain).split(" [")[0],
                     _detail(row.domain_gain, confidence) + versus(contrast and contrast.domain_gain),
                     _gain_tone(row.domain_gain))]
    for label, e, other in (("General knowledge drop", row.knowledge_drop, contrast and contrast.knowledge_drop),
                            ("General behaviour drop", row.behaviour_drop, contrast and contrast.behaviour_drop)):
        if e is not None:
            out.append(KeyNumber(label, estimate(e).split(" [")[0], _detail(e, confidence) + versus(other),
                                 _drop_tone(e, data.budget)))
    if row.checklist_before is not None:
        out.append(KeyNumber("Checklist pass rate", f"{pct(row.checklist_before, 0)} → {pct(row.checklist_after, 0)}",
                             "instructions and format rules"
                             + (f" · {contrast.name}: {pct(contrast.checklist_after, 0)}" if contrast else ""),
                             "bad" if (row.checklist_after or 0) < row.checklist_before - (data.budget or 0)
                             else "good"))
    elif row.kl is not None:
        out.append(KeyNumber("KL to base", f"{row.kl:.3f}", "nats per token", "neutral"))
    return out


def _knows_says_grid(report: ForgettingReport | None) -> dict[str, dict[str, int]] | None:
    ks = report.diagnosis.knows_says if report else None
    if ks is None:
        return None
    return {c: {"before": ks.before[c], "after": ks.after[c], "change": ks.change[c]} for c in KNOWS_SAYS_CELLS}


def metric_rows(m: MetricReport) -> list[tuple[str, Comparison]]:
    """(scope, comparison) rows of one metric table: overall, then suites, then categories."""
    return [("overall", m.overall), *(("suite", c) for c in m.suites), *(("category", c) for c in m.categories)]


def sections(data: ReportData, ctx: dict[str, Any]) -> list[tuple[str, str]]:
    """(anchor, title) of the sections this report shows, for the contents line."""
    r = data.comparison
    shown = [("strategies", "Strategies", data.strategies), ("metrics", "Before and after", r),
             ("tradeoff", "Learning vs forgetting", ctx["scatter"]), ("curves", "During training", ctx["curves"]),
             ("sweep", "Recovery sweep", ctx["sweep_chart"]), ("categories", "By category", ctx["bars"]),
             ("diagnosis", "Diagnosis", r), ("checklist", "Checklist failures", ctx["broken"] or ctx["still_failing"]),
             ("samples", "Sample answers", data.samples), ("recommendation", "Recommendation", ctx["recommendations"]),
             ("reproduce", "Reproduce", data.reproduce.commands or data.reproduce.configs
              or any(s.command or s.config for s in data.strategies)),
             ("timings", "Timings", data.timings)]
    return [(anchor, title) for anchor, title, present in shown if present]


def build_context(data: ReportData) -> dict[str, Any]:
    r = data.comparison
    verdict = data.banner_verdict
    ctx = {
        "d": data, "r": r, "verdict": verdict, "verdict_word": WORDS.get(verdict or "", "report"),
        "verdict_icon": ICONS.get(verdict or "", "•"), "headline": data.banner_headline,
        "subtitle": " · ".join(x for x in (data.subtitle, data.model, data.date, data.machine) if x),
        "key_numbers": key_numbers(data), "key_caption": key_caption(data),
        "scatter": charts.scatter_charts(data), "curves": charts.curve_charts(data),
        "sweep_chart": charts.sweep_chart(data), "bars": charts.category_charts(data),
        "knows_says": _knows_says_grid(r), "cell_labels": CELL_LABELS,
        "recommendations": data.recommendations or (r.recommendations if r else []),
        "broken": [f for f in r.checklist_failures if f.status == "broken"] if r else [],
        "still_failing": [f for f in r.checklist_failures if f.status == "still_failing"] if r else [],
        "confidence": r.confidence if r else 0.95, "words": WORDS,
        "version": _version(), "icons": ICONS,
        "metric_tables": [(m, False) for m in r.metrics] + [(m, True) for m in r.domain] if r else [],
        "drop_tone": lambda e: _drop_tone(e, data.budget), "gain_tone": _gain_tone,
    }
    ctx["sections"] = sections(data, ctx)
    return ctx


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("forgetless")
    except Exception:  # noqa: BLE001 - a report must not fail for a missing metadata entry
        return "dev"


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(Path(__file__).parent), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pct=pct, pp=pp, points=points, num=num, pval=pval, delta=delta, score=score, interval=interval,
                       estimate=estimate, estimate_value=estimate_value, estimate_ci=estimate_ci, seconds=seconds,
                       question=question_text)
    env.globals.update(metric_rows=metric_rows, interval=interval)
    return env


def render_html(data: ReportData | ForgettingReport) -> str:
    """The whole report as one HTML page; a `ForgettingReport` is shown as a before/after report."""
    if isinstance(data, ForgettingReport):
        data = ReportData.from_comparison(data)
    return environment().get_template("template.html").render(**build_context(data))
