"""Which charts a `ReportData` gets, as SVG strings (drawing is in `svg.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from forgetless.compare.schema import ForgettingReport
from forgetless.report.fmt import points
from forgetless.report.model import CurvePoint, Estimate, ReportData, StrategyRow
from forgetless.report.svg import grouped_bars, line_chart, scatter_with_error_bars

METRIC_NAMES = {"knowledge": "knowledge (multiple choice)", "behaviour": "behaviour (open answers)",
                "checklist": "checklist pass rate"}


@dataclass
class Chart:
    svg: str
    caption: str
    wide: bool = False  # spans the page width


def _point(label: str, drop: Estimate | None, gain: Estimate | None) -> tuple | None:
    if drop is None or gain is None or drop.value is None or gain.value is None:
        return None
    return (label, drop.value, drop.ci_low, drop.ci_high, gain.value, gain.ci_low, gain.ci_high)


def _comparison_row(report: ForgettingReport) -> StrategyRow:
    return StrategyRow.from_comparison("this run", report)


def scatter_charts(data: ReportData) -> list[Chart]:
    """Learning (domain gain) against forgetting (general drop): one chart per general metric."""
    rows = data.strategies or ([_comparison_row(data.comparison)] if data.comparison else [])
    charts = []
    for field, what in (("knowledge_drop", "knowledge"), ("behaviour_drop", "behaviour")):
        points = [p for r in rows if (p := _point(r.name, getattr(r, field), r.domain_gain))]
        if not points:
            continue
        svg = scatter_with_error_bars(points, f"general {what} drop (percentage points) → more forgetting",
                                      "domain gain (percentage points)", f"Learning vs forgetting: {what}",
                                      budget=data.budget, budget_label=f"budget {_pp(data.budget)}")
        charts.append(Chart(svg, "Up is learning, right is forgetting; bars are 95% intervals. Best: top left"
                                 + (", inside the shaded budget." if data.budget is not None else ".")))
    return charts


def _pp(x: float | None) -> str:
    return "" if x is None else points(x)


def _series(points: list[CurvePoint], field: str) -> list[tuple[float, float]]:
    return [(p.step, v) for p in points if (v := getattr(p, field)) is not None]


def curve_charts(data: ReportData) -> list[Chart]:
    """Forgetting over training steps, from the training monitor."""
    runs = {s.name: s.curve for s in data.strategies if s.curve}
    if not runs and data.curve:
        runs = {"this run": data.curve}
    if not runs:
        return []
    charts = []
    for field, what in (("knowledge_drop", "knowledge"), ("behaviour_drop", "behaviour")):
        series = {name: _series(pts, field) for name, pts in runs.items()}
        if any(series.values()):
            charts.append(Chart(line_chart(series, "training step", f"{what} drop (percentage points)",
                                           f"Forgetting during training: {what}", hline=data.budget,
                                           hline_label=f"budget {_pp(data.budget)}" if data.budget else "",
                                           percent=True),
                                f"General {what} drop measured by the training monitor on its probe items."))
    kl = {name: _series(pts, "kl") for name, pts in runs.items()}
    if any(kl.values()):
        charts.append(Chart(line_chart(kl, "training step", "KL to the base model (nats/token)",
                                       "Drift from the base model"),
                            "Mean per-token KL(base ‖ model) on general prompts and text."))
    return charts


def sweep_chart(data: ReportData) -> Chart | None:
    sweep = data.sweep
    if sweep is None or not sweep.rows:
        return None
    gain = [(r.alpha, r.domain_gain.value) for r in sweep.rows if r.domain_gain and r.domain_gain.value is not None]
    drop = [(r.alpha, r.general_drop.value) for r in sweep.rows
            if r.general_drop and r.general_drop.value is not None]
    budget = sweep.budget if sweep.budget is not None else data.budget
    chosen = sweep.chosen_alpha
    svg = line_chart({"domain gain": gain, "general drop": drop}, "alpha (0 = base model, 1 = fine-tuned)",
                     "percentage points", "Recovery sweep: interpolating toward the base", hline=budget,
                     hline_label=f"budget {_pp(budget)}" if budget is not None else "", vline=chosen,
                     vline_label=f"chosen α = {chosen:g}" if chosen is not None else "", percent=True)
    return Chart(svg, "Each alpha mixes the weights: base + alpha × (fine-tuned − base). The chosen alpha keeps "
                      "the most domain gain with the general drop inside the budget.")


def category_charts(data: ReportData) -> list[Chart]:
    """Accuracy per category before and after (one chart per metric), or per strategy in a study."""
    charts = []
    if data.comparison is not None:
        for m in data.comparison.metrics:
            if m.metric == "text" or len(m.categories) < 2:
                continue
            cats = [c.label for c in m.categories]
            svg = grouped_bars(cats, {"before": [c.before for c in m.categories],
                                      "after": [c.after for c in m.categories]},
                               f"{METRIC_NAMES.get(m.metric, m.title)} by category", y_label="accuracy (%)",
                               y_max=1.0)
            charts.append(Chart(svg, f"{m.title}: before and after fine-tuning, per category."))
    with_cats = [s for s in data.strategies if s.categories]
    if with_cats:
        cats = list(dict.fromkeys(c.name for s in with_cats for c in s.categories))
        base = {c.name: c.before for s in with_cats for c in s.categories if c.before is not None}
        series = {"base model": [base.get(c) for c in cats]}
        for s in with_cats:
            after = {c.name: c.after for c in s.categories}
            series[s.name] = [after.get(c) for c in cats]
        wide = len(cats) * len(series) > 16
        charts.append(Chart(grouped_bars(cats, series, "General knowledge by category", y_label="accuracy (%)",
                                         y_max=1.0, width=1000 if wide else 560),
                            "Multiple-choice accuracy per category: the base model and each strategy after training.",
                            wide=wide))
    return charts
