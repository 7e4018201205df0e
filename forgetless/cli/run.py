"""`forgetless run`: the whole job on the defaults, or on the user's model, data and config."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from forgetless.cli.console import console, info, print_json, quiet_libraries, run_with_progress
from forgetless.cli.main import app
from forgetless.cli.merge import parse_alphas
from forgetless.compare.render import render_text
from forgetless.errors import ForgetlessError
from forgetless.merge import DEFAULT_ALPHAS, SweepResult
from forgetless.workflow.run import CPU_TRAIN_SECONDS, MIN_STEPS, PASSES, RunOptions, run

# the budget's numbers come from the workflow's constants, so the help cannot fall behind them
RUN_HELP = f"""Evaluate -> fine-tune with protections (LoRA + self-replay with KL on it + monitor) -> evaluate ->
compare -> report.

The training budget follows the data: {PASSES} passes over it (at least {MIN_STEPS} steps); on a CPU, at most
what fits a {CPU_TRAIN_SECONDS} s training stage.

Examples:
  forgetless run
  forgetless run --data mydata.jsonl --out runs/mine
  forgetless run --config examples/lora-replay-ewc.yaml --set max_steps=30
  forgetless run --budget 0.02 --alphas 0,0.25,0.5,0.75,1
"""


def _ci(value: float | None, ci: Any) -> str:
    return "-" if value is None else f"{value:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")


def recovery_line(result: SweepResult) -> str:
    """The chosen alpha with its domain gain and general drop (the worse of knowledge and behaviour), with CIs."""
    if result.chosen is None:
        return f"recovery: no alpha within budget {result.budget:g} - {result.reason}"
    row = result.row(result.chosen)
    measures = [(name, drop, ci) for name, drop, ci in (("knowledge", row.knowledge_drop, row.knowledge_ci),
                                                         ("behaviour", row.behaviour_drop, row.behaviour_ci))
                if drop is not None]
    name, drop, ci = max(measures, key=lambda m: m[2][1] if m[2] else -1.0, default=("general", None, None))
    return (f"recovery: alpha {result.chosen:g} - domain gain {_ci(row.domain_gain, row.domain_gain_ci)}, "
            f"general drop ({name}) {_ci(drop, ci)} within budget {result.budget:g}; model in {result.saved}")


@app.command("run", help=RUN_HELP)
def run_command(
    model: str = typer.Option("smollm2-135m", "--model", "-m", help="Base model (built-in name, folder, .gguf, hub id)."),
    data: str = typer.Option("builtin:domain/train.jsonl", "--data", "-d",
                             help="Training JSONL: chat messages, prompt/response or text (default: the bundled domain)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Training YAML overriding the protected defaults."),
    out: Path = typer.Option(Path("runs/forgetless-run"), "--out", "-o", help="Run folder (must be new or empty)."),
    domain_suite: Optional[str] = typer.Option(None, "--domain-suite", help="Held-out domain questions (suite name or JSONL)."),
    per_type: int = typer.Option(50, "--items", min=0, help="Items per type per suite (0 = whole suites)."),
    threshold: float = typer.Option(0.05, "--threshold", min=0.0, help="Largest tolerated general drop."),
    set_: list[str] = typer.Option([], "--set", help="Override a training key, e.g. --set max_steps=30."),
    budget: Optional[float] = typer.Option(None, "--budget", min=0.0,
                                           help="Last stage: sweep alphas and keep the best model whose general drop "
                                                "(upper CI end) is within this budget (OUT/recovered/)."),
    alphas: Optional[str] = typer.Option(None, "--alphas", help="Comma-separated alphas in [0, 1] for --budget "
                                         f"(default {','.join(f'{a:g}' for a in DEFAULT_ALPHAS)})."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    if alphas is not None and budget is None:
        raise ForgetlessError("--alphas is the recovery sweep's grid and needs --budget", hint="e.g. --budget 0.02")
    quiet_libraries()
    options = RunOptions(model=model, data=data, config=str(config) if config else None, out=str(out),
                         domain_suite=domain_suite, per_type=per_type or None, threshold=threshold, overrides=set_,
                         budget=budget, alphas=tuple(parse_alphas(alphas)) if alphas else DEFAULT_ALPHAS)
    summary = run_with_progress(run, options, notify=info)
    report = summary.report
    if as_json:
        print_json({"out": str(summary.out), "verdict": report.verdict, "headline": report.headline,
                    "reports": summary.paths, "seconds": summary.seconds, "train": summary.train,
                    "sweep": summary.sweep.to_dict() if summary.sweep else None})
        return
    console.print(render_text(report))
    if summary.sweep is not None:
        console.print(recovery_line(summary.sweep), markup=False, highlight=False)
    console.print(f"\n[bold]report:[/] {summary.paths.get('html')}   "
                  f"(took {sum(summary.seconds.values()) / 60:.1f} min)")
