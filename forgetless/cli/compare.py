"""`forgetless compare`: the paired before/after report, with a CI gate."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from forgetless.cli.console import console, info
from forgetless.cli.main import app
from forgetless.compare import ForgettingReport, compare
from forgetless.compare.render import render_text, text_string
from forgetless.errors import ForgetlessError
from forgetless.eval.results import EvalResult
from forgetless.io import atomic_write_text, check_output_path
from forgetless.report import render_html, render_markdown

Format = Enum("Format", {name: name for name in ("text", "md", "json", "html")}, type=str)


def _render(report: ForgettingReport, fmt: str) -> str:
    if fmt == "md":
        return render_markdown(report)
    if fmt == "json":
        return report.to_json()
    if fmt == "html":
        return render_html(report)
    return text_string(report)


@app.command("compare")
def compare_command(
    before: Path = typer.Argument(..., help="Results of the model before fine-tuning (from `forgetless eval`)."),
    after: Path = typer.Argument(..., help="Results of the fine-tuned model on the same suites."),
    threshold: float = typer.Option(0.05, "--threshold", "-t", min=0.0,
                                    help="Largest tolerated drop (accuracy; nats per token for text)."),
    confidence: float = typer.Option(0.95, "--confidence", min=0.5, max=0.999, help="Confidence of the intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap resampling."),
    fmt: Format = typer.Option("text", "--format", "-f", help="Output format."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the report to this file (atomically)."),
    fail_on_forgetting: bool = typer.Option(False, "--fail-on-forgetting",
                                            help="Exit with code 1 when forgetting is detected (for CI)."),
    training_data: Path | None = typer.Option(None, "--training-data",
                                                 help="Training JSONL, to check general replies for copying its "
                                                      "phrasing (default: the run's own data, if recorded)."),
    domain_suite: list[str] = typer.Option([], "--domain-suite", help="Suite that measures the fine-tuning target "
                                           "(scored as a gain); repeatable. Default: suites of 'domain-*' items."),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
) -> None:
    """Compare the same probe items before and after fine-tuning: verdict, diagnosis, recommendations.

    Exit codes: 0 = report written, 1 = forgetting detected (with --fail-on-forgetting), 2 = user error.

    Examples:
      forgetless compare before.json after.json
      forgetless compare before.json after.json --format md --out report.md
      forgetless compare before.json after.json --json
      forgetless compare before.json after.json --threshold 0.02 --fail-on-forgetting
    """
    if as_json and fmt.value not in ("text", "json"):
        raise ForgetlessError(f"--json and --format {fmt.value} ask for two formats", hint="give one of them")
    if out is not None:
        check_output_path(out)
    report = compare(EvalResult.load(before), EvalResult.load(after), threshold=threshold, confidence=confidence,
                     seed=seed, training_data=training_data, domain_suites=domain_suite or None)
    fmt_name = "json" if as_json else fmt.value
    if out is not None:
        atomic_write_text(out, _render(report, fmt_name))
        info(f"{report.headline}\nreport written to [bold]{out}[/]")
    elif fmt_name == "text":
        console.print(render_text(report))
    else:
        typer.echo(_render(report, fmt_name), nl=False)
    if fail_on_forgetting and report.forgetting:
        raise typer.Exit(1)
