"""`forgetless runs list|show|compare`: the run history that every eval, train, sweep, run, demo and merge adds to."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from forgetless.cli.console import console, print_json
from forgetless.cli.main import app
from forgetless.history import KINDS, Diff, Run, compare_runs, flatten, get_run, history_path, list_runs

runs_app = typer.Typer(name="runs", no_args_is_help=True, rich_markup_mode="rich",
                       help="The run history: what ran when, with which config, what it scored and wrote where.")
app.add_typer(runs_app, name="runs")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def _when(iso: str | None) -> str:
    return iso.replace("T", " ")[:16] if iso else "-"


@runs_app.command("list")
def list_command(
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help="Only runs of this kind: " + ", ".join(KINDS) + "."),
    limit: int = typer.Option(20, "--limit", "-n", min=0, help="Most recent runs shown (0 = all)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The most recent runs, newest first.

    Examples:
      forgetless runs list
      forgetless runs list --kind train --limit 5 --json
    """
    runs = list_runs(kind, limit or None)
    if as_json:
        print_json([r.to_dict() for r in runs])
        return
    if not runs:
        console.print(f"no runs recorded{f' of kind {kind}' if kind else ''} in {escape(str(history_path()))}")
        return
    table = Table(title=f"Runs ({escape(str(history_path()))})")
    for column in ("id", "kind", "finished (UTC)", "status", "model", "output"):
        table.add_column(column, justify="right" if column == "id" else "left")
    for r in runs:
        output = next(iter(r.paths.values()), None)
        table.add_row(str(r.id), r.kind, _when(r.finished), r.status, _cell(r.model), _cell(output))
    console.print(table)


def _section(table: Table, title: str, values: dict[str, Any]) -> None:
    for i, (key, value) in enumerate(flatten(values).items()):
        table.add_row(title if i == 0 else "", escape(key), _cell(value))


@runs_app.command("show")
def show_command(
    run_id: int = typer.Argument(..., metavar="ID", help="Run id (see `forgetless runs list`)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """One run: when, what command, which config, what it scored and the files it wrote.

    Example: forgetless runs show 12
    """
    run = get_run(run_id)
    if as_json:
        print_json(run.to_dict())
        return
    table = Table(title=f"Run {run.id} ({run.kind}, {run.status})", show_header=False)
    for _ in range(3):
        table.add_column()
    _section(table, "run", {"created": run.created, "finished": run.finished, "model": run.model,
                            "command": run.command, "host": run.host, "forgetless": run.version})
    for title, values in (("files", run.paths), ("metrics", run.metrics), ("config", run.config)):
        if values:
            table.add_section()
            _section(table, title, values)
    console.print(table)


def _diff_table(title: str, rows: list[Diff], a: Run, b: Run) -> Table:
    table = Table(title=title)
    for column in ("key", f"run {a.id}", f"run {b.id}", "b - a"):
        table.add_column(column, justify="left" if column == "key" else "right")
    for d in rows:
        delta = "-" if d.delta is None else f"{d.delta:+.4g}"
        table.add_row(escape(d.key), _cell(d.a), _cell(d.b), delta)
    return table


@runs_app.command("compare")
def compare_command(
    a: int = typer.Argument(..., metavar="ID_A", help="First run id."),
    b: int = typer.Argument(..., metavar="ID_B", help="Second run id."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Two runs metric by metric (b - a), and the config keys where they differ.

    For the statistics of a before/after comparison, use `forgetless compare` on the results files.

    Example: forgetless runs compare 3 7
    """
    run_a, run_b = get_run(a), get_run(b)
    result = compare_runs(run_a, run_b)
    if as_json:
        print_json({"a": a, "b": b, **{k: [asdict(d) for d in v] for k, v in result.items()}})
        return
    console.print(_diff_table(f"Metrics: run {a} ({run_a.kind}) vs run {b} ({run_b.kind})", result["metrics"],
                              run_a, run_b))
    if result["config"]:
        console.print(_diff_table("Config keys that differ", result["config"], run_a, run_b))
    else:
        console.print("same config")
