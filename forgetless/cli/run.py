"""`forgetless run`: the whole job on the defaults, or on the user's model, data and config."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from forgetless.cli.console import console, info, print_json, quiet_libraries, run_with_progress
from forgetless.cli.main import app
from forgetless.compare.render import render_text
from forgetless.workflow.run import RunOptions, run


@app.command("run")
def run_command(
    model: str = typer.Option("smollm2-135m", "--model", "-m", help="Base model (built-in name, folder, .gguf, hub id)."),
    data: str = typer.Option("builtin:domain/train.jsonl", "--data", "-d",
                             help="Training JSONL: chat messages, prompt/response or text (default: the bundled domain)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Training YAML overriding the protected defaults."),
    out: Path = typer.Option(Path("runs/forgetless-run"), "--out", "-o", help="Run folder (must be new or empty)."),
    domain_suite: Optional[str] = typer.Option(None, "--domain-suite", help="Held-out domain questions (suite name or JSONL)."),
    per_type: int = typer.Option(150, "--items", min=0, help="Items per type per suite (0 = whole suites)."),
    threshold: float = typer.Option(0.05, "--threshold", min=0.0, help="Largest tolerated general drop."),
    set_: list[str] = typer.Option([], "--set", help="Override a training key, e.g. --set max_steps=30."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Evaluate -> fine-tune with protections (LoRA + self-replay + monitor) -> evaluate -> compare -> report.

    Examples:
      forgetless run
      forgetless run --data mydata.jsonl --out runs/mine
      forgetless run --config examples/lora-replay-ewc.yaml --set max_steps=30
    """
    quiet_libraries()
    options = RunOptions(model=model, data=data, config=str(config) if config else None, out=str(out),
                         domain_suite=domain_suite, per_type=per_type or None, threshold=threshold, overrides=set_)
    summary = run_with_progress(run, options, notify=info)
    report = summary.report
    if as_json:
        print_json({"out": str(summary.out), "verdict": report.verdict, "headline": report.headline,
                    "reports": summary.paths, "seconds": summary.seconds, "train": summary.train})
        return
    console.print(render_text(report))
    console.print(f"\n[bold]report:[/] {summary.paths.get('html')}   "
                  f"(took {sum(summary.seconds.values()) / 60:.1f} min)")
