"""`write_report`: the three files of one report, HTML, Markdown and JSON, side by side."""

from __future__ import annotations

from pathlib import Path

from forgetless.compare.schema import ForgettingReport
from forgetless.io import atomic_write_text
from forgetless.report.html import render_html
from forgetless.report.markdown import render_markdown
from forgetless.report.model import ReportData


def write_report(out_dir: str | Path, data: ReportData | ForgettingReport) -> dict[str, Path]:
    """Write report.html, report.md and report.json into `out_dir` (each atomically); returns their paths."""
    if isinstance(data, ForgettingReport):
        data = ReportData.from_comparison(data)
    out = Path(out_dir)
    paths = {"html": out / "report.html", "md": out / "report.md", "json": out / "report.json"}
    atomic_write_text(paths["html"], render_html(data))
    atomic_write_text(paths["md"], render_markdown(data))
    atomic_write_text(paths["json"], data.to_json())
    return paths
