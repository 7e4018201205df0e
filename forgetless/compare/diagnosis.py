"""What kind of forgetting: lost knowledge, or knowledge intact but the model no longer *says* it.

Multiple-choice log-likelihood asks "does the model still rank the right answer first?"; the open
twin of the same question asks "does it still answer it?". Crossing the two per item on the
after-model gives four cells:

    knows_and_says   mc right, open right
    knows_not_says   mc right, open wrong   <- grows under behavioural drift
    says_not_knows   mc wrong, open right
    neither          mc wrong, open wrong

Knowledge loss moves items out of the "knows" row; behavioural drift moves them from
knows_and_says to knows_not_says while the knowledge row stays put.
"""

from __future__ import annotations

from forgetless.compare.pairing import Pair
from forgetless.compare.schema import (
    Diagnosis,
    KnowsSays,
    MetricReport,
    OpeningConcentration,
    TemplateCollapse,
)

KNOWS_SAYS_CELLS = ("knows_and_says", "knows_not_says", "says_not_knows", "neither")
CELL_LABELS = {"knows_and_says": "knows and says", "knows_not_says": "knows but doesn't say",
               "says_not_knows": "says but doesn't know", "neither": "neither"}
LABELS = {
    "none": "no forgetting",
    "knowledge_loss": "knowledge loss",
    "behavioural_drift": "behavioural drift with knowledge intact",
    "knowledge_and_behaviour": "knowledge loss and behavioural drift",
    "text_drift": "distribution drift (general text became less likely), answers intact",
    "inconclusive": "inconclusive: the suites are too small or too noisy to tell",
}
# when the measures a label calls intact only show no significant drop (their verdict is inconclusive)
NOT_RULED_OUT = {
    "behavioural_drift": "behavioural drift; knowledge shows no significant drop, but a loss is not ruled out",
    "text_drift": "distribution drift (general text became less likely); answers show no significant drop, but a "
                  "loss is not ruled out",
}


def _cell(knows: bool, says: bool) -> str:
    return KNOWS_SAYS_CELLS[(0 if says else 1) if knows else (2 if says else 3)]


def knows_says(pairs: list[Pair]) -> KnowsSays | None:
    """The 2x2 knows/says table before and after, on mc items with an open-ended answer on both sides."""
    rows = [p for p in pairs if p.before.type == "mc" and None not in
            (p.before.correct, p.after.correct, p.before.open_correct, p.after.open_correct)]
    if not rows:
        return None
    before = dict.fromkeys(KNOWS_SAYS_CELLS, 0)
    after = dict.fromkeys(KNOWS_SAYS_CELLS, 0)
    for p in rows:
        before[_cell(p.before.correct, p.before.open_correct)] += 1
        after[_cell(p.after.correct, p.after.open_correct)] += 1
    return KnowsSays(n=len(rows), before=before, after=after, change={c: after[c] - before[c] for c in before})


def _forgot(report: MetricReport | None) -> bool:
    """The metric, or one of its suites or categories, shows forgetting."""
    if report is None:
        return False
    return any(c.verdict == "forgetting" for c in [report.overall, *report.suites, *report.categories])


def _line(m: MetricReport) -> str:
    o = m.overall
    return (f"{m.metric}: {o.before:.3f} -> {o.after:.3f} (drop {o.drop:+.3f}, CI [{o.ci_low:+.3f}, "
            f"{o.ci_high:+.3f}], p = {o.p_adjusted:.2g}; {o.verdict.replace('_', ' ')})")


def diagnose(metrics: list[MetricReport], overall: str, table: KnowsSays | None,
             collapse: TemplateCollapse | None, concentration: OpeningConcentration | None) -> Diagnosis:
    """Name the kind of forgetting from the metric verdicts, and explain it in a few sentences."""
    by = {m.metric: m for m in metrics}
    knowledge = _forgot(by.get("knowledge"))
    behaviour = _forgot(by.get("behaviour")) or _forgot(by.get("checklist")) or bool(collapse and collapse.collapsed)
    if knowledge and behaviour:
        kind = "knowledge_and_behaviour"
    elif knowledge:
        kind = "knowledge_loss"
    elif behaviour:
        kind = "behavioural_drift"
    elif _forgot(by.get("text")):
        kind = "text_drift"
    else:
        kind = "none" if overall == "no_forgetting" else "inconclusive"
    label = LABELS[kind]
    intact = {"behavioural_drift": ("knowledge",), "text_drift": ("knowledge", "behaviour", "checklist")}.get(kind, ())
    if any(by[m].overall.verdict != "no_forgetting" for m in intact if m in by):
        label = NOT_RULED_OUT[kind]
    if kind == "behavioural_drift" and "knowledge" not in by:
        label = "behavioural drift (knowledge not measured: no multiple-choice items)"
    details = [_line(m) for m in metrics]
    if kind == "behavioural_drift" and "knowledge" in by and by["knowledge"].overall.verdict == "inconclusive":
        k = by["knowledge"].overall
        details.append(f"knowledge shows no significant drop, though {k.n} items can only rule out drops above "
                       f"{k.ci_high:.3f}")
    if table is not None:
        moved = table.change["knows_not_says"]
        details.append(f"{table.after['knows_not_says']} of {table.n} multiple-choice items are known but not said "
                       f"after fine-tuning ({moved:+d} vs before)")
    if collapse is not None and collapse.collapsed:
        details.append(f"template collapse: {collapse.share_after:.0%} of general replies copy the training "
                       f"responses' phrasing (before: {collapse.share_before:.0%})")
    concentrated = concentration is not None and concentration.share_after >= max(0.2, concentration.share_before + 0.1)
    if concentrated and not (collapse and collapse.collapsed):
        details.append(f"{concentration.share_after:.0%} of general replies now start with "
                       f"'{concentration.opening}' (before: {concentration.share_before:.0%})")
    return Diagnosis(kind=kind, label=label, details=details, knows_says=table, template_collapse=collapse,
                     opening_concentration=concentration)
