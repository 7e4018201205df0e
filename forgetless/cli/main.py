"""The `forgetless` command: thin wrappers over the Python API, one subcommand per module."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from forgetless.cli.console import err_console, state
from forgetless.errors import ForgetlessError

app = typer.Typer(
    name="forgetless",
    help="Fine-tune causal language models without catastrophic forgetting, and prove it with numbers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


@app.callback()
def _root(quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or status lines.")) -> None:
    state["quiet"] = quiet


def _register_commands() -> None:
    """Each module adds its own subcommands; importing them here keeps `main` tiny."""
    from forgetless.cli import compare, demo, eval, info, merge, run, train  # noqa: F401


_register_commands()


def main() -> None:
    """Entry point: user errors become one red line and exit code 2, never a traceback."""
    try:
        app()
    except ForgetlessError as e:
        # The message quotes user text (paths, JSON values): escape it, or "[/x]" in it would crash Rich.
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", markup=True, highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
