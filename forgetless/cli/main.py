"""The `forgetless` command: thin wrappers over the Python API, one subcommand per module."""

from __future__ import annotations

import shlex
import sys
from enum import Enum
from typing import Optional

import typer
from rich.markup import escape

from forgetless.cli.console import LEVELS, err_console, set_verbosity
from forgetless.errors import ForgetlessError, Interrupted
from forgetless.history import called_as

app = typer.Typer(
    name="forgetless",
    help="Fine-tune causal language models without catastrophic forgetting, and prove it with numbers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


Verbosity = Enum("Verbosity", {name: name for name in LEVELS}, type=str)


@app.callback()
def _root(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or status lines."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, show_default=False,
                                help="More log output: -v info, -vv debug."),
    verbosity: Optional[Verbosity] = typer.Option(None, "--verbosity", envvar="FORGETLESS_VERBOSITY",
                                                  case_sensitive=False, show_envvar=True,
                                                  help="Log level of forgetless and transformers (as "
                                                       "TRANSFORMERS_VERBOSITY); error also hides status lines."),
) -> None:
    set_verbosity(verbosity.value if verbosity else None, verbose, quiet)


def _register_commands() -> None:
    """Each module adds its own subcommands; importing them here keeps `main` tiny."""
    from forgetless.cli import compare, demo, eval, info, lmeval, merge, run, runs, train  # noqa: F401


_register_commands()


def main() -> None:
    """Entry point: user errors become one red line and exit code 2, never a traceback."""
    from forgetless.models.device import keep_freed_memory

    keep_freed_memory()
    try:
        with called_as(command=shlex.join(["forgetless", *sys.argv[1:]])):  # recorded with each run (history)
            app()
    except ForgetlessError as e:
        # The message quotes user text (paths, JSON values): escape it, or "[/x]" in it would crash Rich.
        label = "[yellow]interrupted:[/]" if isinstance(e, Interrupted) else "[bold red]error:[/]"
        err_console.print(f"{label} {escape(str(e))}", markup=True, highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
