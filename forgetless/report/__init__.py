"""Report: one self-contained HTML page (plus Markdown and JSON) that shows what fine-tuning learned and forgot.

    from forgetless.report import ReportData, render_html, write_report
    html = render_html(forgetting_report)                 # a `compare` result, as a before/after page
    paths = write_report("out/", ReportData(title=..., strategies=[...], sweep=...))
"""

from forgetless.report.html import render_html
from forgetless.report.markdown import render_markdown
from forgetless.report.model import (
                                     CategoryScore,
                                     CurvePoint,
                                     Estimate,
                                     ReportData,
                                     Reproduce,
                                     Sample,
                                     StrategyRow,
                                     Sweep,
                                     SweepRow,
)
from forgetless.report.write import write_report

__all__ = ["CategoryScore", "CurvePoint", "Estimate", "ReportData", "Reproduce", "Sample", "StrategyRow", "Sweep",
           "SweepRow", "render_html", "render_markdown", "write_report"]
