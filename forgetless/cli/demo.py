"""`forgetless demo`: the strategy study on the bundled data; `forgetless demo tiny`: forgetting in seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from forgetless.cli.console import (
    console,
    info,
    print_json,
    quiet_libraries,
    run_with_progress,
)
from forgetless.cli.main import app
from forgetless.compare.render import COLOURS
from forgetless.history import called_as

demo_app = typer.Typer(name="demo", no_args_is_help=False, rich_markup_mode="rich")
app.add_typer(demo_app, name="demo")




def _pts(est: Any) -> str:
    if est is None or est.value is None:
        return "-"
    if est.unit != "accuracy":
        return f"{est.value:+.3f}"
    text = f"{est.value * 100:+.1f}"
    if est.ci_low is not None and est.ci_high is not None:
        text += f" [{est.ci_low * 100:+.1f}, {est.ci_high * 100:+.1f}]"
    if est.p_value is not None:
        text += f" p={est.p_value:.2g}"
    return text


def _shift(before: float | None, after: float | None) -> str:
    return "-" if after is None else f"{(before or 0) * 100:.0f}% -> {after * 100:.0f}%"


def study_table(rows: list[Any], recommended: str | None) -> Any:
    from rich.table import Table

    table = Table(title="Strategy study (percentage points; drop = base - tuned, [95% CI], adjusted p)")
    for col in ("strategy", "domain gain", "knowledge drop", "behaviour drop", "checklist", "copies", "KL", "verdict"):
        table.add_column(col, justify="left" if col in ("strategy", "verdict") else "right")
    for r in rows:
        chk, copies = _shift(r.checklist_before, r.checklist_after), _shift(r.template_copy_before, r.template_copy_after)
        name = f"[bold green]{r.name} *[/]" if r.name == recommended else r.name
        colour = COLOURS.get(r.verdict or "", "white")
        table.add_row(name, _pts(r.domain_gain), _pts(r.knowledge_drop), _pts(r.behaviour_drop), chk, copies,
                      "-" if r.kl is None else f"{r.kl:.3f}", f"[{colour}]{r.verdict or '-'}[/]")
    return table


@demo_app.callback(invoke_without_command=True)
def demo_command(
    ctx: typer.Context,
    quick: bool = typer.Option(False, "--quick", help="Smoke test: 4 steps, 12 items per type (numbers are noise)."),
    out: Path = typer.Option(Path("runs/forgetless-study"), "--out", "-o", help="Study folder (must be new or empty)."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Optimizer steps per strategy (default 30; quick 4)."),
    items: int | None = typer.Option(None, "--items", min=0,
                                     help="Items per type per suite (default 50, as `forgetless run`; quick 12; "
                                          "0 = whole suites)."),
    model: str = typer.Option("smollm2-135m", "--model", "-m", help="Base model (built-in name, folder, hub id)."),
    strategy: list[str] = typer.Option([], "--strategy", "-s",
                                       help="Only these strategies (repeatable): aggressive-full, safe-full, "
                                            "full-ewc, lora, lora-replay, run-defaults (default: those), "
                                            "lora-kl."),
    recover: bool = typer.Option(True, "--recover/--no-recover",
                                 help="Interpolate the aggressive full fine-tune back towards the base."),
    threshold: float = typer.Option(0.05, "--threshold", min=0.0,
                                    help="Verdicts: a general drop at least this large (and significant) is forgetting."),
    budget: float = typer.Option(0.10, "--budget", min=0.0,
                                 help="Recovery: the largest general drop (upper 95% CI end) the chosen alpha may have. "
                                      "50 items per type give CIs about +-10 pp wide; --items 0 for tighter budgets."),
    seed: int = typer.Option(0, "--seed", min=0, help="Training and evaluation seed."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Six ways to fine-tune the same model on the same data with the same step budget: what each learned,
    what each forgot, which to use. Writes study.json and report.html/md/json.

    Examples:
      forgetless demo --quick --out /tmp/study-quick
      forgetless demo --out runs/study            (about 22 minutes on 2 CPU cores)
      forgetless demo --steps 60 --items 100 -s lora -s lora-replay
      forgetless demo tiny
    """
    if ctx.invoked_subcommand is not None:
        return
    from forgetless.workflow.study import DEFAULT_STRATEGIES, StudyOptions, run_study

    quiet_libraries()
    options = StudyOptions(model=model, out=str(out), quick=quick, steps=steps, per_type=items, seed=seed,
                           threshold=threshold, budget=budget, recover=recover,
                           strategies=tuple(strategy) if strategy else DEFAULT_STRATEGIES)
    result = run_with_progress(run_study, options, notify=info)
    if as_json:
        print_json({"out": str(result.out), "recommended": result.recommended, "reason": result.reason,
                    "strategies": [r.model_dump(mode="json", exclude={"curve", "categories", "config"})
                                   for r in result.rows],
                    "recovery": result.recovery_note, "reports": result.paths, "seconds": result.seconds})
        return
    console.print(study_table(result.rows, result.recommended))
    console.print(f"[bold]recommended:[/] {result.reason}")
    if result.recovery_note:
        console.print(f"[bold]recovery:[/] {result.recovery_note}")
    console.print(f"\n[bold]report:[/] {result.paths.get('html')}   (took {result.seconds.get('total', 0) / 60:.1f} min)")


@demo_app.command("tiny")
def tiny_command(
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder for tiny-demo.svg and tiny-demo.json."),
    seed: int = typer.Option(0, "--seed", min=0),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON instead of the text summary."),
) -> None:
    """Catastrophic forgetting and EWC / L2-SP on two toy problems, in seconds, on any CPU.

    Examples:
      forgetless demo tiny
      forgetless demo tiny --out runs/tiny --json
    """
    from forgetless.demo.tiny import format_tiny_demo, run_tiny_demo, tiny_demo_svg
    from forgetless.io import atomic_write_text

    with called_as(out=out):
        result = run_tiny_demo(seed)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "tiny-demo.svg", tiny_demo_svg(result))
        atomic_write_text(out / "tiny-demo.json", result.to_json() + "\n")
    if as_json:
        print_json(result.to_dict())
        return
    console.print(format_tiny_demo(result), markup=False)
    if out is not None:
        console.print(f"\n[bold]plot:[/] {out / 'tiny-demo.svg'}")
