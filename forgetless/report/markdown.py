"""The report as Markdown: the same sections as the HTML, as tables, without the charts.

Model text is flattened to one line, `|` is escaped and `<` becomes `&lt;`, so a reply can neither break
a table nor inject HTML into a renderer that allows it. Code blocks (commands, configs) stay literal.
"""

from __future__ import annotations

import re

from forgetless.compare.diagnosis import CELL_LABELS, KNOWS_SAYS_CELLS
from forgetless.compare.render import WORDS
from forgetless.compare.schema import ForgettingReport, MetricReport
from forgetless.report.fmt import (
    delta,
    estimate,
    interval,
    num,
    pct,
    points,
    pval,
    score,
    seconds,
)
from forgetless.report.html import key_caption, key_numbers, metric_rows
from forgetless.report.model import ReportData, question_text

REPLY_CHARS = 160


def cell(text: object, limit: int | None = None) -> str:
    flat = " ".join(str(text).split())
    if limit and len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return flat.replace("<", "&lt;").replace("|", "\\|")


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def fence(text: str, lang: str = "") -> list[str]:
    """A code block whose fence is longer than any backtick run inside it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    bar = "`" * max(3, longest + 1)
    return [bar + lang, text.rstrip("\n"), bar, ""]


def _verdict(v: str | None) -> str:
    return WORDS.get(v or "", "–")


def _header(d: ReportData) -> list[str]:
    sub = " · ".join(x for x in (d.subtitle, d.model, d.date, d.machine) if x)
    out = [f"# {cell(d.title)}", ""] + ([cell(sub), ""] if sub else [])
    if d.comparison is not None and d.comparison.tradeoff:
        out += [f"**{cell(d.comparison.tradeoff)}**", ""]
    out += [f"**{_verdict(d.banner_verdict).upper()}**" + (f" — {cell(d.banner_headline)}" if d.banner_headline
                                                              else ""), ""]
    if d.budget is not None:
        out += [f"Budget: a general drop of at most {points(d.budget)}.", ""]
    caption = key_caption(d)
    out += [cell(caption), ""] if caption else []
    out += [f"- **{k.label}**: {k.value}" + (f" ({k.detail})" if k.detail else "") for k in key_numbers(d)]
    notes = (d.comparison.warnings if d.comparison else []) + d.notes
    return out + [""] + [f"> note: {cell(w)}" for w in notes] + ([""] if notes else [])


def _shift(before: float | None, after: float | None) -> str:
    """A share before -> after, in whole percent."""
    return "–" if before is None else f"{pct(before, 0)} → {pct(after, 0)}"


def _strategies(d: ReportData) -> list[str]:
    if not d.strategies:
        return []
    rows = [[f"**{cell(s.name)}**" + (" (recommended)" if s.name == d.recommended else ""), _verdict(s.verdict),
             estimate(s.domain_gain), estimate(s.knowledge_drop),
             pval(s.knowledge_drop.p_value if s.knowledge_drop else None), estimate(s.behaviour_drop),
             pval(s.behaviour_drop.p_value if s.behaviour_drop else None),
             _shift(s.checklist_before, s.checklist_after), _shift(s.template_copy_before, s.template_copy_after),
             num(s.kl), seconds(s.seconds)] for s in d.strategies]
    return ["## Strategies", "", "Drops: general accuracy before − after, percentage points [95% CI]. Template "
            "copies: general replies that copy the training responses' phrasing.", "",
            *table(["strategy", "verdict", "domain gain", "knowledge drop", "p", "behaviour drop", "p", "checklist",
                    "template copies", "KL", "time"], rows)]


def _metric(r: ForgettingReport, m: MetricReport, domain: bool) -> list[str]:
    unit = "nats" if m.metric == "text" else "accuracy"
    rows = []
    for scope, c in metric_rows(m):
        change, ci = ((-c.drop, interval(-c.ci_high, -c.ci_low, unit)) if domain
                      else (c.drop, interval(c.ci_low, c.ci_high, unit)))
        label = "**overall**" if scope == "overall" else cell(c.label) + (" (suite)" if scope == "suite" else "")
        rows.append([label, str(c.n), score(c.before, unit), score(c.after, unit), delta(change, unit), ci,
                     pval(c.p_adjusted), delta(c.mde, unit) if c.mde is not None else "–", _verdict(c.verdict)])
    head = ["", "n", "before", "after", "gain" if domain else "drop", f"{r.confidence:.0%} CI", "p (Holm)", "MDE",
            "verdict"]
    return [f"### {'Domain gain — ' if domain else ''}{cell(m.title)}", "", *table(head, rows)]


def _comparison(r: ForgettingReport | None) -> list[str]:
    if r is None:
        return []
    sides = f"`{cell(r.before.model.get('spec', '?'))}` → `{cell(r.after.model.get('spec', '?'))}`"
    out = ["## Before and after", "", f"{sides}; threshold {r.threshold:g}, seed {r.seed}.", ""]
    for m in r.metrics:
        out += _metric(r, m, False)
    for m in r.domain:
        out += _metric(r, m, True)
    d = r.diagnosis
    out += ["## Diagnosis", "", f"**{cell(d.label)}**", "", *(f"- {cell(x)}" for x in d.details), ""]
    if d.knows_says is not None:
        ks = d.knows_says
        rows = [[CELL_LABELS[c], str(ks.before[c]), str(ks.after[c]), f"{ks.change[c]:+d}"] for c in KNOWS_SAYS_CELLS]
        out += [f"Knows it vs says it ({ks.n} multiple-choice items):", "",
                *table(["", "before", "after", "change"], rows)]
    if d.template_collapse is not None:
        tc = d.template_collapse
        found = "detected" if tc.collapsed else "not detected"
        out += [(f"Template collapse ({found}): {pct(tc.share_before, 0)} → {pct(tc.share_after, 0)} of {tc.n} "
                 f"general replies copy the training phrasing (p = {pval(tc.p_value)})."), ""]
    if r.checklist_failures:
        rows = [[cell(f.key), cell(f.severity), f.status.replace("_", " "), cell("; ".join(f.failed_checks)),
                 cell(f.reply_after or "–", REPLY_CHARS)] for f in r.checklist_failures]
        out += ["## Checklist failures", "", *table(["item", "severity", "status", "failed checks", "reply after"],
                                                    rows)]
    return out


def _sweep(d: ReportData) -> list[str]:
    if d.sweep is None or not d.sweep.rows:
        return []
    rows = [[f"{r.alpha:g}" + (" (chosen)" if r.alpha == d.sweep.chosen_alpha else ""), estimate(r.domain_gain),
             estimate(r.general_drop), "–" if r.within_budget is None else "yes" if r.within_budget else "no"]
            for r in d.sweep.rows]
    out = ["## Recovery sweep", ""] + ([cell(d.sweep.description), ""] if d.sweep.description else [])
    budget = f"within {points(d.sweep.budget)}" if d.sweep.budget is not None else "within budget"
    return out + table(["alpha", "domain gain", "general drop (worst upper CI end judged)", budget], rows)


def _curves(d: ReportData) -> list[str]:
    runs = {s.name: s.curve for s in d.strategies if s.curve} or ({"this run": d.curve} if d.curve else {})
    if not runs:
        return []
    rows = [[cell(name), str(p.step), delta(p.knowledge_drop), delta(p.behaviour_drop), num(p.kl, 4)]
            for name, pts in runs.items() for p in pts[-1:]]
    return ["## Forgetting during training (last monitor point)", "",
            *table(["run", "step", "knowledge drop", "behaviour drop", "KL"], rows)]


def _samples(d: ReportData) -> list[str]:
    if not d.samples:
        return []
    rows = [[cell(s.label or "–"), cell(question_text(s.question), 100), cell(s.before or "–", REPLY_CHARS),
             cell(s.after or "–", REPLY_CHARS)] for s in d.samples]
    return ["## Sample answers", "", *table(["item", "question", "before", "after"], rows)]


def _recommendations(d: ReportData) -> list[str]:
    recs = d.recommendations or (d.comparison.recommendations if d.comparison else [])
    if not recs:
        return []
    return ["## Recommendation", "", *(f"{i}. **{cell(x.action)}** — {cell(x.why)}. Change: `{cell(x.change)}`"
                                       for i, x in enumerate(recs, 1)), ""]


def _reproduce(d: ReportData) -> list[str]:
    runs = [s for s in d.strategies if s.command or s.config]
    if not (d.reproduce.commands or d.reproduce.configs or runs):
        return []
    out = ["## Reproduce", ""]
    if d.reproduce.commands:
        out += fence("\n".join(d.reproduce.commands), "bash")
    for name, text in d.reproduce.configs.items():
        out += [f"`{cell(name)}`:", "", *fence(text, "yaml")]
    for s in runs:
        out += [f"**{cell(s.name)}**", ""]
        out += fence(s.command, "bash") if s.command else []
        out += fence(s.config, "yaml") if s.config else []
    return out


def render_markdown(data: ReportData | ForgettingReport) -> str:
    d = ReportData.from_comparison(data) if isinstance(data, ForgettingReport) else data
    out = [*_header(d), *_strategies(d), *_comparison(d.comparison), *_sweep(d), *_curves(d), *_samples(d),
           *_recommendations(d), *_reproduce(d)]
    if d.timings:
        out += ["## Timings", "", *table(["what", "time"], [[cell(k), seconds(v)] for k, v in d.timings.items()])]
    return "\n".join(out).rstrip() + "\n"
