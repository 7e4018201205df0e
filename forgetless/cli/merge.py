"""`forgetless merge` and `forgetless sweep`: recover general ability by interpolating towards the base."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from forgetless.cli.console import console, info, print_json, quiet_libraries, run_with_progress
from forgetless.cli.main import app
from forgetless.errors import ForgetlessError
from forgetless.eval import EvalSettings
from forgetless.merge import DEFAULT_ALPHAS, SweepResult, merge, sweep
from forgetless.merge.saving import prepare_out
from forgetless.merge.sweep import resolve_suites

BASE_HELP = "The model the tuned one was fine-tuned from (default: the one its run folder records)."
TUNED_HELP = "A forgetless run folder, a fine-tuned model folder, or a LoRA adapter folder (with --base)."


def parse_alphas(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ForgetlessError(f"--alphas must be comma-separated numbers, got '{text}'",
                              hint="e.g. --alphas 0,0.25,0.5,0.75,1") from None
    if not values:
        raise ForgetlessError("--alphas is empty", hint="e.g. --alphas 0,0.25,0.5,0.75,1")
    return values


@app.command("merge")
def merge_command(
    tuned: str = typer.Option(..., "--tuned", help=TUNED_HELP),
    alpha: float = typer.Option(..., "--alpha", min=0.0, max=1.0, help="0 = base model, 1 = fine-tuned model."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the interpolated model (or scaled adapter) to."),
    base: Optional[str] = typer.Option(None, "--base", help=BASE_HELP),
    lower_alpha: Optional[float] = typer.Option(None, "--lower-alpha", min=0.0, max=1.0,
                                                help="Separate alpha for the lower half of the blocks (and embeddings)."),
    split: Optional[int] = typer.Option(None, "--split", min=0, help="First block counted as upper (default: half)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="Dtype to mix and save in (default float32)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier merge or sweep output folder."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Write theta = (1 - alpha) * base + alpha * tuned as a model `forgetless eval` and transformers load.

    For a LoRA run the adapter is scaled by alpha instead (exactly the same model), and OUT is an
    adapter folder plus a run file.

    Examples:
      forgetless merge --tuned runs/demo --alpha 0.5 --out merged/
      forgetless merge --base smollm2-135m --tuned runs/full --alpha 0.7 --lower-alpha 0.3 --out merged/
    """
    prepare_out(out, overwrite)
    quiet_libraries()
    info(f"loading [bold]{tuned}[/]")
    folder = merge(base, tuned, alpha, out, lower_alpha=lower_alpha, split=split, dtype=dtype, overwrite=overwrite)
    record = {"out": str(folder), "alpha": alpha, "lower_alpha": lower_alpha}
    if as_json:
        print_json(record)
        return
    info(f"wrote alpha {alpha:g} to [bold]{folder}[/] (try: forgetless eval {folder})")


def _cell(value: float | None, ci: tuple[float, float] | list[float] | None = None, signed: bool = True) -> str:
    if value is None:
        return "-"
    text = f"{value:+.3f}" if signed else f"{value:.3f}"
    return f"{text} [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else text


def print_sweep(result: SweepResult) -> None:
    table = Table(title=f"Sweep ({result.kind}; budget {result.budget:g} on the upper {result.confidence:.0%} CI end)")
    for column in ("alpha", "domain acc", "domain gain [CI]", "knowledge drop [CI]", "behaviour drop [CI]",
                   "checklist drop [CI]", "worst upper", "within budget", "seconds"):
        table.add_column(column, justify="right")
    for r in result.rows:
        mark = "[green]yes[/]" if r.within_budget else "[red]no[/]"
        style = "bold" if r.alpha == result.chosen else None
        table.add_row(f"{r.alpha:g}", _cell(r.domain_acc, signed=False), _cell(r.domain_gain, r.domain_gain_ci),
                      _cell(r.knowledge_drop, r.knowledge_ci), _cell(r.behaviour_drop, r.behaviour_ci),
                      _cell(r.checklist_drop, r.checklist_ci), _cell(r.general_drop_high), "base" if r.alpha == 0 else mark, f"{r.eval_seconds:.1f}",
                      style=style)
    console.print(table)
    head = (f"[bold green]chosen alpha: {result.chosen:g}[/]" if result.chosen is not None
            else "[bold red]no alpha chosen[/]")
    console.print(f"{head} - {result.reason}")


@app.command("sweep")
def sweep_command(
    tuned: str = typer.Option(..., "--tuned", help=TUNED_HELP),
    base: Optional[str] = typer.Option(None, "--base", help=BASE_HELP),
    alphas: str = typer.Option(",".join(f"{a:g}" for a in DEFAULT_ALPHAS), "--alphas",
                               help="Comma-separated alphas in [0, 1]; 0 (the base) is always added."),
    budget: float = typer.Option(0.02, "--budget", min=0.0, help="Largest tolerated general drop (accuracy units)."),
    suite: list[str] = typer.Option(["general"], "--suite", "-s", help="General suite (name or JSONL); repeatable."),
    domain_suite: str = typer.Option("domain", "--domain-suite", help="Suite of the new skill (name or JSONL file)."),
    metric: str = typer.Option("all", "--metric", help="General drop judged on: all, knowledge, behaviour or "
                                                        "checklist."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for sweep.json and the chosen model."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier sweep or merge output folder."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Items per forward pass (scores do not depend on it)."),
    open_ended: bool = typer.Option(True, "--open-ended/--no-open-ended", help="Also ask each mc question openly."),
    max_new_tokens: int = typer.Option(32, "--max-new-tokens", min=1, help="Token limit for short answers."),
    confidence: float = typer.Option(0.95, "--confidence", min=0.5, max=0.999, help="Confidence of the paired CIs."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N, mps (default: best available)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, bfloat16 or float16."),
    as_json: bool = typer.Option(False, "--json", help="Print the sweep as JSON."),
) -> None:
    """Evaluate (1 - alpha) * base + alpha * tuned for several alphas and choose the best one inside a budget.

    The alphas are tested from the smallest up, each against the base as `forgetless compare` would
    report it; the first whose general drop (upper CI end, the worst of knowledge, behaviour and
    checklist) exceeds --budget ends the sequence. Of those before it, the one with the largest
    domain gain is chosen; none when the smallest alpha > 0 already exceeds the budget.

    Examples:
      forgetless sweep --tuned runs/demo --out recovered/
      forgetless sweep --tuned runs/full --base smollm2-135m --alphas 0,0.5,1 --budget 0.03
      forgetless sweep --tuned runs/demo --domain-suite my_domain.jsonl --suite general --suite checklist
    """
    grid = parse_alphas(alphas)
    general, domain = resolve_suites(suite, domain_suite)
    if out is not None:
        prepare_out(out, overwrite)
    quiet_libraries()
    info(f"loading [bold]{tuned}[/]")
    settings = EvalSettings(batch_size=batch_size, open_ended=open_ended, max_new_tokens=max_new_tokens)
    result = run_with_progress(sweep, base, tuned, alphas=grid, budget=budget, general_suites=general,
                               domain_suite=domain, general_metric=metric, settings=settings, confidence=confidence,
                               seed=seed, out=out, overwrite=overwrite, device=device, dtype=dtype)
    if as_json:
        print_json(result.to_dict())
        return
    print_sweep(result)
    if out is not None:
        saved = f"; chosen model in [bold]{out}[/]" if result.saved else ""
        info(f"sweep written to [bold]{out / 'sweep.json'}[/]{saved}")
