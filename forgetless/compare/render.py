"""Render a `ForgettingReport` for the terminal (Rich) and as Markdown. JSON is `report.to_json()`."""

from __future__ import annotations

import io

from rich import box
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from forgetless.compare.diagnosis import CELL_LABELS, KNOWS_SAYS_CELLS
from forgetless.compare.schema import Comparison, ForgettingReport, MetricReport

COLOURS = {"forgetting": "red", "no_forgetting": "green", "inconclusive": "yellow"}
WORDS = {"forgetting": "forgetting", "no_forgetting": "no forgetting", "inconclusive": "inconclusive"}
REPLY_CHARS = 90


def _short(text: str | None, limit: int = REPLY_CHARS) -> str:
    if text is None:
        return "-"
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _p(p: float) -> str:
    return "<1e-4" if p < 1e-4 else f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _cells(c: Comparison) -> list[str]:
    """n, before, after, drop, CI, p (Holm), MDE as strings."""
    return [str(c.n), f"{c.before:.3f}", f"{c.after:.3f}", f"{c.drop:+.3f}", f"[{c.ci_low:.3f}, {c.ci_high:.3f}]",
            _p(c.p_adjusted), "-" if c.mde is None else f"{c.mde:.3f}"]


def _rows(m: MetricReport) -> list[tuple[str, Comparison]]:
    return ([("overall", m.overall)] + [(f"suite {c.label}", c) for c in m.suites]
            + [(f"  {c.label}", c) for c in m.categories])


def _columns(r: ForgettingReport) -> list[str]:
    return ["", "n", "before", "after", "drop", f"{r.confidence:.0%} CI", "p Holm", "MDE", "verdict"]


def _title(m: MetricReport, domain: bool) -> str:
    unit = "mean NLL; drop = increase" if m.metric == "text" else m.unit
    return f"{'Domain gain — ' if domain else ''}{m.title} [{unit}]"


# --- terminal -----------------------------------------------------------------------------------


def _metric_table(r: ForgettingReport, m: MetricReport, *, domain: bool = False) -> Table:
    table = Table(title=_title(m, domain), title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
                  pad_edge=False, padding=(0, 1), collapse_padding=True)
    for i, name in enumerate(_columns(r)):
        table.add_column(name, justify="left" if i in (0, 8) else "right", no_wrap=i > 0,
                         min_width={0: 10, 8: 12}.get(i), overflow="ellipsis")
    for label, c in _rows(m):
        colour = COLOURS[c.verdict]
        drop_style = "red" if c.drop > 0 and c.verdict == "forgetting" else ""
        cells = _cells(c)
        cells[3] = f"[{drop_style}]{cells[3]}[/]" if drop_style else cells[3]
        style = "bold" if c.scope == "overall" else ""
        table.add_row(Text(label, style=style), *cells, f"[{colour}]{WORDS[c.verdict]}[/]")
    notes = []
    if m.perplexity_before is not None:
        notes.append(f"perplexity {m.perplexity_before:.2f} -> {m.perplexity_after:.2f}")
    if m.kl is not None:
        notes.append(f"KL from reference {m.kl.mean:.4f} nats/token [{m.kl.ci_low:.4f}, {m.kl.ci_high:.4f}]")
    if notes:
        table.caption = "; ".join(notes)
    return table


def _diagnosis(r: ForgettingReport) -> RenderableType:
    d = r.diagnosis
    parts: list[RenderableType] = [Text(d.label, style="bold"), *(Text(f"• {x}") for x in d.details)]
    if d.knows_says is not None:
        t = Table(title=f"Multiple-choice items, knows x says ({d.knows_says.n} items)", title_justify="left")
        for name in ("", "before", "after", "change"):
            t.add_column(name, justify="left" if not name else "right")
        for cell in KNOWS_SAYS_CELLS:
            ch = d.knows_says.change[cell]
            t.add_row(CELL_LABELS[cell], str(d.knows_says.before[cell]), str(d.knows_says.after[cell]), f"{ch:+d}")
        parts.append(t)
    tc = d.template_collapse
    if tc is not None:
        colour = "red" if tc.collapsed else "green"
        parts.append(Text.from_markup(
            f"template collapse: [{colour}]{tc.share_before:.0%} -> {tc.share_after:.0%}[/] of {tc.n} general "
            f"replies copy the training phrasing (shared {tc.ngram}-gram {tc.ngram_share_before:.0%} -> "
            f"{tc.ngram_share_after:.0%}, common opening {tc.opening_share_before:.0%} -> "
            f"{tc.opening_share_after:.0%}; p = {_p(tc.p_value)})"))
        parts += [Text(f"  {e.key}: “{_short(e.reply_after, 70)}”  (copies '{e.matched}')", style="dim")
                  for e in tc.examples[:3]]
    return Panel(Group(*parts), title="Diagnosis", title_align="left")


def _failures(r: ForgettingReport) -> list[RenderableType]:
    """Checks broken by fine-tuning in a table; those that failed before too as one line."""
    broken = [f for f in r.checklist_failures if f.status == "broken"]
    still = [f for f in r.checklist_failures if f.status == "still_failing"]
    out: list[RenderableType] = []
    if broken:
        t = Table(title="Checklist items broken by fine-tuning", title_justify="left", title_style="bold",
                  box=box.SIMPLE_HEAD, pad_edge=False)
        for name in ("item", "severity", "failed checks", "reply after"):
            t.add_column(name, no_wrap=name in ("item", "severity"))
        sev = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "dim"}
        for f in broken:
            t.add_row(f.key.split("/", 1)[-1], f"[{sev.get(f.severity, '')}]{f.severity}[/]",
                      "; ".join(f.failed_checks), _short(f.reply_after, 60))
        out.append(t)
    if still:
        out.append(Text(f"{len(still)} checklist items failed before too: "
                        + ", ".join(f.key.split("/", 1)[-1] for f in still), style="dim"))
    return out


def render_text(report: ForgettingReport) -> RenderableType:
    """Rich renderables for the terminal: verdict, metric tables, diagnosis, failures, recommendations."""
    r = report
    colour = COLOURS[r.verdict]
    header = Text.from_markup((f"[bold]{escape(r.tradeoff)}[/]\n" if r.tradeoff else "")
                              + f"[bold {colour}]{WORDS[r.verdict].upper()}[/]  {r.headline}\n"
                              f"[dim]{r.before.model.get('spec', '?')} -> {r.after.model.get('spec', '?')}; "
                              f"threshold {r.threshold:g}, {r.confidence:.0%} confidence, seed {r.seed}[/]")
    parts: list[RenderableType] = [Panel(header, border_style=colour)]
    if r.triggered_by:
        parts.append(Text(f"triggered by: {', '.join(r.triggered_by)}", style=colour))
    parts += [_metric_table(r, m) for m in r.metrics]
    parts += [_metric_table(r, m, domain=True) for m in r.domain]
    parts.append(_diagnosis(r))
    parts += _failures(r)
    if r.recommendations:
        lines = [Text.from_markup(f"{i}. [bold]{x.action}[/] — {x.why}\n   [cyan]{x.change}[/]")
                 for i, x in enumerate(r.recommendations, 1)]
        parts.append(Panel(Group(*lines), title="Recommendations", title_align="left"))
    parts += [Text(f"warning: {w}", style="yellow") for w in r.warnings]
    return Group(*parts)


def text_string(report: ForgettingReport, width: int = 120) -> str:
    """The terminal rendering as plain text (for --out FILE with --format text)."""
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None, highlight=False)
    console.print(render_text(report))
    return console.export_text()


# --- markdown -----------------------------------------------------------------------------------
