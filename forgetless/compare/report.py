"""`compare(before, after)`: the paired before/after report, top to bottom.

    pair items (refuse mismatches) -> paired stats per metric, suite and category (Holm)
    -> overall verdict -> diagnosis (knows/says table, template collapse) -> checklist failures
    -> lost examples -> recommendations
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from forgetless.compare.collapse import (
    opening_concentration,
    template_collapse,
    training_responses,
)
from forgetless.compare.diagnosis import diagnose, knows_says
from forgetless.compare.metrics import Settings, item_scores, metric_reports
from forgetless.compare.pairing import Pair, pair_items, setting_warnings
from forgetless.compare.recommend import recommend
from forgetless.compare.schema import (
    ChecklistFailure,
    ForgettingReport,
    LostExample,
    MetricReport,
    ModelSide,
    TemplateCollapse,
    Verdict,
)
from forgetless.errors import ForgetlessError
from forgetless.eval.results import EvalResult, ItemResult
from forgetless.lint import find_boilerplate

SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}
EXAMPLES_PER_METRIC = 5

__all__ = ["ForgettingReport", "compare"]


def _domain_suites(pairs: list[Pair], chosen: Sequence[str] | None) -> set[str]:
    """Suites that measure the fine-tuning target: named by the caller, else every category is 'domain-*'."""
    suites = {p.after.suite for p in pairs}
    if chosen is not None:
        unknown = sorted(set(chosen) - suites)
        if unknown:
            raise ForgetlessError(f"domain suite '{unknown[0]}' is not in the results (suites: {sorted(suites)})")
        return set(chosen)
    cats: dict[str, set[str]] = defaultdict(set)
    for p in pairs:
        cats[p.after.suite].add(p.after.category)
    return {s for s, cs in cats.items() if all(c.startswith("domain") for c in cs)}


def _training_source(after: EvalResult, training_data: str | Path | None,
                     warnings: list[str]) -> tuple[Path | None, int | None]:
    """The training JSONL to check replies against, and its number of responses (None if unavailable)."""
    from forgetless.io import resolve_data_path

    if training_data is not None:
        path = resolve_data_path(training_data)
        return path, len(training_responses(path))  # the user asked for it: errors are errors
    training = after.training or {}
    config = training.get("config") if isinstance(training.get("config"), dict) else training
    spec = config.get("data")
    if not isinstance(spec, str):
        return None, None
    path = resolve_data_path(spec)
    try:
        return path, len(training_responses(path))
    except ForgetlessError as e:
        warnings.append(f"training data not usable, template collapse not measured: {e}")
        return None, None


def _available_items(after: EvalResult, domain_names: set[str]) -> dict[str, int]:
    """Items per metric in the whole general suites the results were drawn from (a run may score a subset)."""
    from forgetless.suites import load_suite

    counts = {"knowledge": 0, "behaviour": 0, "checklist": 0}
    for record in after.suites:
        if record.name in domain_names or not record.path:
            continue
        try:
            suite = load_suite(record.path)
        except ForgetlessError:
            continue
        mc, gen, check = (len(suite.by_type(t)) for t in ("mc", "gen", "check"))
        counts["knowledge"] += mc
        counts["behaviour"] += mc + gen
        counts["checklist"] += check
    return counts


def _triggers(metrics: list[MetricReport], collapse: TemplateCollapse | None) -> list[str]:
    out = []
    for m in metrics:
        if m.overall.verdict == "forgetting":
            out.append(m.metric)
        out += [f"{m.metric}: {c.label}" for c in [*m.suites, *m.categories] if c.verdict == "forgetting"]
    if collapse is not None and collapse.collapsed:
        out.append("template collapse")
    return out


def _overall(metrics: list[MetricReport], triggered: list[str]) -> Verdict:
    if triggered:
        return "forgetting"
    if metrics and all(m.overall.verdict == "no_forgetting" for m in metrics):
        return "no_forgetting"
    return "inconclusive"


def _checklist_failures(pairs: list[Pair]) -> list[ChecklistFailure]:
    """Checks failing after: those that passed before first, then by severity (critical first)."""
    out = []
    for p in pairs:
        b, a = p.before, p.after
        if a.type != "check" or a.correct is not False:
            continue
        out.append(ChecklistFailure(key=p.key, category=a.category, severity=a.severity or "medium",
                                    status="broken" if b.correct else "still_failing",
                                    failed_checks=[c.describe for c in a.checks or [] if not c.passed],
                                    prompt=a.prompt, reply_before=b.reply, reply_after=a.reply))
    return sorted(out, key=lambda f: (f.status != "broken", SEVERITY_ORDER.get(f.severity, 9), f.key))


def _shown_answer(item: ItemResult, metric: str) -> str | None:
    if metric == "knowledge" and item.choices is not None and item.pred is not None:
        return item.choices[item.pred]
    return item.reply


def _lost_examples(pairs: list[Pair]) -> list[LostExample]:
    """A few items per metric that were right before and wrong after, spread over categories."""
    out = []
    for metric in ("knowledge", "behaviour", "checklist"):
        by_cat: dict[str, list[Pair]] = defaultdict(list)
        for p in pairs:
            sc = item_scores(p, metric)
            if sc is not None and sc[0] > sc[1]:
                by_cat[p.after.category].append(p)
        chosen: list[Pair] = []
        while len(chosen) < EXAMPLES_PER_METRIC and any(by_cat.values()):
            for rows in by_cat.values():  # round robin over categories
                if rows and len(chosen) < EXAMPLES_PER_METRIC:
                    chosen.append(rows.pop(0))
        for p in chosen:
            a = p.after
            expected = a.choices[a.answer] if a.choices is not None and a.answer is not None else None
            out.append(LostExample(key=p.key, metric=metric, category=a.category, prompt=a.prompt, expected=expected,
                                   answer_before=_shown_answer(p.before, metric),
                                   answer_after=_shown_answer(a, metric)))
    return out


def _headline(verdict: Verdict, metrics: list[MetricReport], label: str, threshold: float, confidence: float) -> str:
    pct = f"{confidence:.0%}"
    if verdict == "forgetting":
        worst = max((m for m in metrics if m.overall.verdict == "forgetting"), key=lambda m: m.overall.drop,
                    default=None)
        if worst is None:
            return f"Forgetting detected: {label}"
        o = worst.overall
        return (f"Forgetting detected: {label}. {worst.metric} {o.before:.3f} -> {o.after:.3f} "
                f"(drop {o.drop:.3f}, {pct} CI [{o.ci_low:.3f}, {o.ci_high:.3f}])")
    if verdict == "no_forgetting":
        return f"No forgetting: every metric rules out a drop of {threshold:g} ({pct} confidence)"
    return f"Inconclusive: no metric shows forgetting, but not every metric can rule out a drop of {threshold:g}"


DOMAIN_WORDS = {"knowledge": "multiple choice", "behaviour": "open answers", "checklist": "checklist",
                "text": "text NLL"}


def _tradeoff(domain: list[MetricReport], metrics: list[MetricReport], collapse: TemplateCollapse | None,
              confidence: float) -> str:
    """One line, learning first: each domain gain with its CI and the accuracy after, then each general drop."""
    pct = f"{confidence:.0%} CI"
    if domain:
        gains = []
        for m in domain:
            o = m.overall
            sig = "significant" if o.ci_high < 0 else "not significant"
            gains.append(f"{DOMAIN_WORDS[m.metric]} {o.before:.2f} -> {o.after:.2f} ({-o.drop:+.3f}, {pct} "
                         f"[{-o.ci_high:+.3f}, {-o.ci_low:+.3f}], {sig})")
        learned = "Learned: domain " + "; ".join(gains)
    else:
        learned = "Learned: not measured (no domain suite)"
    kept = []
    for m in metrics:
        o = m.overall
        if m.metric == "checklist":
            kept.append(f"checklist {o.before:.2f} -> {o.after:.2f} (drop {o.drop:+.3f}, {pct} [{o.ci_low:+.3f}, "
                        f"{o.ci_high:+.3f}])")
        else:
            kept.append(f"{m.metric} drop {o.drop:+.3f} [{o.ci_low:+.3f}, {o.ci_high:+.3f}]")
    if collapse is not None:
        kept.append(f"template copies {collapse.share_before:.0%} -> {collapse.share_after:.0%}")
    return learned + ". Cost: " + ("; ".join(kept) if kept else "not measured") + "."


def compare(before: EvalResult, after: EvalResult, *, threshold: float = 0.05, confidence: float = 0.95,
            seed: int = 0, training_data: str | Path | None = None, alpha: float = 0.05,
            domain_suites: Sequence[str] | None = None, n_resamples: int = 10_000) -> ForgettingReport:
    """Compare two results of `forgetless eval` on the same items, item by item.

    `threshold` is the largest drop you tolerate (accuracy units; nats per token for text). With
    `training_data` (or a readable `after.training["data"]`) general replies are also checked for
    copying the training responses. Suites whose categories all start with "domain" (or those named
    in `domain_suites`) are scored as gains and kept out of the forgetting verdict.
    """
    if not threshold >= 0:
        raise ForgetlessError(f"threshold must be a non-negative drop, got {threshold}", hint="e.g. 0.05")
    if not 0 < confidence < 1:
        raise ForgetlessError(f"confidence must be between 0 and 1, got {confidence}", hint="e.g. 0.95")
    pairs = pair_items(before, after)
    warnings = setting_warnings(before, after)
    domain_names = _domain_suites(pairs, domain_suites)
    general = [p for p in pairs if p.after.suite not in domain_names]
    if not general:
        warnings.append("every suite is a domain suite: nothing measures forgetting")
    s = Settings(threshold=threshold, confidence=confidence, alpha=alpha, seed=seed, n_resamples=n_resamples)
    metrics = metric_reports(general, s)
    domain = metric_reports([p for p in pairs if p.after.suite in domain_names], s)
    source, n_examples = _training_source(after, training_data, warnings)
    boilerplate = find_boilerplate(training_responses(source)) if source is not None else []
    collapse = template_collapse(general, source, alpha=alpha) if source is not None else None
    triggered = _triggers(metrics, collapse)
    verdict = _overall(metrics, triggered)
    diagnosis = diagnose(metrics, verdict, knows_says(general), collapse, opening_concentration(general))
    return ForgettingReport(
        before=ModelSide(model=before.model, training=before.training),
        after=ModelSide(model=after.model, training=after.training),
        threshold=threshold, confidence=confidence, alpha=alpha, seed=seed,
        suites=[x.name for x in after.suites], domain_suites=sorted(domain_names), verdict=verdict,
        headline=_headline(verdict, metrics, diagnosis.label, threshold, confidence),
        tradeoff=_tradeoff(domain, metrics, collapse, confidence), triggered_by=triggered,
        metrics=metrics, domain=domain, diagnosis=diagnosis, checklist_failures=_checklist_failures(general),
        lost_examples=_lost_examples(general),
        recommendations=recommend(verdict, metrics, domain, diagnosis, threshold, after.training, n_examples,
                                  boilerplate, _available_items(after, domain_names)),
        warnings=warnings)
