"""Paired per-item statistics for each metric, on all items, per suite and per category.

    knowledge  mc `correct`             (log-likelihood picks the right option)
    behaviour  mc `open_correct` + gen `correct`   (the model *says* the right answer)
    checklist  check `correct`          (every check on the reply passed)
    text       -nll per item            (so drop = increase in NLL, nats per token)

Each slice gets `summarize_drop` (bootstrap CI, exact McNemar or sign-flip p, MDE); p-values are
Holm-adjusted within a family (the headline metrics; the suites of one metric; the categories of
one metric) and the verdict follows `forgetless.stats.verdict` with the adjusted p. For binary
metrics the interval is the union of the bootstrap and the Newcombe intervals: the bootstrap
interval collapses to a point when no item flips, which would let a 20-item suite "prove" there
was no forgetting; Newcombe's does not.
"""

from __future__ import annotations

import math
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from forgetless.compare.pairing import Pair
from forgetless.compare.schema import Comparison, KLSummary, MetricName, MetricReport
from forgetless.eval.results import ItemResult
from forgetless.stats import (
    DropStats,
    holm,
    paired_bootstrap_ci,
    paired_counts,
    paired_newcombe_ci,
    summarize_drop,
    verdict,
)

METRICS: dict[MetricName, tuple[str, str]] = {  # name -> (title, unit)
    "knowledge": ("Knowledge (multiple choice, log-likelihood)", "accuracy"),
    "behaviour": ("Behaviour (open answers)", "accuracy"),
    "checklist": ("Checklist (instructions, format, reasoning)", "pass rate"),
    "text": ("Text drift (NLL per token)", "nats/token"),
}


@dataclass(frozen=True)
class Settings:
    threshold: float
    confidence: float
    alpha: float
    seed: int
    n_resamples: int = 10_000


def outcome(item: ItemResult, metric: MetricName) -> float | None:
    """One item's score on `metric` (higher is better), or None where the item does not count.

    The one definition of each measure: compare, the sweep and the training monitor all read it.
    """
    if metric == "knowledge" and item.type == "mc":
        value = item.correct
    elif metric == "behaviour" and item.type == "mc":
        value = item.open_correct
    elif (metric, item.type) in (("behaviour", "gen"), ("checklist", "check")):
        value = item.correct
    elif metric == "text" and item.type == "text":
        return None if item.nll is None else -item.nll
    else:
        return None
    return None if value is None else float(value)


def mean_outcome(items: Iterable[ItemResult], metric: MetricName) -> float | None:
    """A result's accuracy (pass rate, -NLL) on `metric` over the items that count; None when none do."""
    values = [v for v in (outcome(it, metric) for it in items) if v is not None]
    return sum(values) / len(values) if values else None


def item_scores(pair: Pair, metric: MetricName) -> tuple[float, float] | None:
    """(before, after) score of one item on `metric`, or None if it does not count on both sides."""
    b, a = outcome(pair.before, metric), outcome(pair.after, metric)
    return None if b is None or a is None else (b, a)


def _rng(s: Settings, *parts: str) -> np.random.Generator:
    """A generator per slice, so a slice's numbers do not depend on which other slices exist."""
    return np.random.default_rng([s.seed, zlib.crc32("/".join(parts).encode())])


@dataclass(frozen=True)
class _Slice:
    scope: str
    label: str
    stats: DropStats  # with the interval the verdict uses (binary: bootstrap and Newcombe united)


def _slice(metric: MetricName, scope: str, label: str, scores: list[tuple[float, float]], s: Settings) -> _Slice:
    before = np.array([x for x, _ in scores])
    after = np.array([y for _, y in scores])
    stats = summarize_drop(before, after, rng=_rng(s, metric, scope, label), confidence=s.confidence,
                           n_resamples=s.n_resamples, alpha=s.alpha)
    if stats.kind == "binary":
        low, high = paired_newcombe_ci(paired_counts(before, after), confidence=s.confidence)
        stats = replace(stats, ci_low=min(stats.ci_low, low), ci_high=max(stats.ci_high, high))
    return _Slice(scope, label, stats)


def _reason(st: DropStats, v: str, p_adj: float, s: Settings) -> str:
    pct = f"{s.confidence:.0%}"
    if v == "forgetting":
        return f"drop {st.drop:.3f} >= {s.threshold:g} and significant (p = {p_adj:.2g})"
    if v == "no_forgetting":
        return f"the {pct} upper bound {st.ci_high:.3f} is below {s.threshold:g}"
    if not math.isfinite(st.mde) or st.mde > s.threshold:
        mde = "no drop" if not math.isfinite(st.mde) else f"only drops >= {st.mde:.3f}"
        return f"too few items: {st.n} can detect {mde}"
    if st.drop >= s.threshold:
        return f"drop {st.drop:.3f} is not significant (p = {p_adj:.2g})"
    return f"the {pct} interval reaches {st.ci_high:.3f}, above {s.threshold:g}"


def _finish(metric: MetricName, sl: _Slice, p_adj: float, s: Settings) -> Comparison:
    st = sl.stats
    v = verdict(st, s.threshold, p_value=p_adj, alpha=s.alpha)
    sign = -1.0 if metric == "text" else 1.0  # text scores are -NLL; report the NLL itself
    return Comparison(metric=metric, scope=sl.scope, label=sl.label, n=st.n, before=sign * st.acc_before,
                      after=sign * st.acc_after, drop=st.drop, ci_low=st.ci_low, ci_high=st.ci_high,
                      ci_method="bootstrap+newcombe" if st.kind == "binary" else "bootstrap",
                      p_value=st.p_value, p_adjusted=p_adj, lost=st.lost, gained=st.gained,
                      mde=st.mde if math.isfinite(st.mde) else None, verdict=v, reason=_reason(st, v, p_adj, s))


def _family(slices: list[tuple[MetricName, _Slice]], s: Settings) -> list[Comparison]:
    """Holm-adjust the p-values of one family of slices and give each its verdict."""
    adjusted = holm([sl.stats.p_value for _, sl in slices]) if slices else []
    return [_finish(metric, sl, p, s) for (metric, sl), p in zip(slices, adjusted)]


def _kl_summary(pairs: list[Pair], s: Settings) -> KLSummary | None:
    kls = np.array([p.after.kl for p in pairs if p.after.type == "text" and p.after.kl is not None])
    if kls.size == 0:
        return None
    low, high = paired_bootstrap_ci(kls, np.zeros_like(kls), rng=_rng(s, "text", "kl"), confidence=s.confidence,
                                    n_resamples=s.n_resamples)
    return KLSummary(n=int(kls.size), mean=float(kls.mean()), ci_low=low, ci_high=high)


def _breakdown(metric: MetricName, scored: list[tuple[Pair, tuple[float, float]]],
               s: Settings) -> tuple[_Slice, list[_Slice], list[_Slice]]:
    by_suite: dict[str, list] = defaultdict(list)
    by_cat: dict[tuple[str, str], list] = defaultdict(list)
    for pair, sc in scored:
        by_suite[pair.after.suite].append(sc)
        by_cat[(pair.after.suite, pair.after.category)].append(sc)
    overall = _slice(metric, "overall", "overall", [sc for _, sc in scored], s)
    suites = [_slice(metric, "suite", name, v, s) for name, v in by_suite.items()] if len(by_suite) > 1 else []
    many = len(by_suite) > 1
    cats = [_slice(metric, "category", f"{suite}/{cat}" if many else cat, v, s)
            for (suite, cat), v in sorted(by_cat.items())]
    return overall, suites, cats


def metric_reports(pairs: list[Pair], s: Settings) -> list[MetricReport]:
    """One report per metric that has items, with the headline p-values Holm-adjusted across metrics."""
    parts = []
    for metric in METRICS:
        scored = [(p, sc) for p in pairs if (sc := item_scores(p, metric)) is not None]
        if scored:
            parts.append((metric, scored, *_breakdown(metric, scored, s)))
    headline = _family([(metric, overall) for metric, _, overall, _, _ in parts], s)
    reports = []
    for (metric, scored, _, suites, cats), top in zip(parts, headline):
        title, unit = METRICS[metric]
        report = MetricReport(metric=metric, title=title, unit=unit, overall=top,
                              suites=_family([(metric, x) for x in suites], s),
                              categories=_family([(metric, x) for x in cats], s))
        if metric == "text":
            report.perplexity_before = math.exp(report.overall.before)
            report.perplexity_after = math.exp(report.overall.after)
            report.kl = _kl_summary([p for p, _ in scored], s)
        reports.append(report)
    return reports
