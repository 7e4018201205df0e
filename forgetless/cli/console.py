"""Terminal output shared by all commands: Rich consoles, progress bars, JSON printing, log levels.

Progress bars disable themselves when output is not a terminal or `--quiet` is given. Verbosity
follows transformers: error, warning (default), info, debug; it sets the `forgetless` logger and,
when chosen explicitly, transformers' own logger too.
"""

from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
state: dict[str, Any] = {"quiet": False, "library_level": logging.ERROR}
LEVELS = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}


class _ConsoleHandler(logging.Handler):
    """`forgetless.*` log records on stderr through Rich, written to whatever stderr is at the time."""

    def emit(self, record: logging.LogRecord) -> None:
        colour = {logging.WARNING: "yellow", logging.ERROR: "bold red"}.get(record.levelno, "dim")
        err_console.print(f"[{colour}]{record.levelname.lower()}:[/] {escape(record.getMessage())}", soft_wrap=True)


def set_verbosity(verbosity: str | None, verbose: int = 0, quiet: bool = False) -> int:
    """The level from --verbosity (or FORGETLESS_VERBOSITY), each -v one step chattier; --quiet hides status lines."""
    level = max(logging.DEBUG, LEVELS[(verbosity or "warning").lower()] - 10 * verbose)
    logger = logging.getLogger("forgetless")
    logger.setLevel(level)
    if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
        logger.addHandler(_ConsoleHandler())
    state["quiet"] = quiet or level >= logging.ERROR
    # transformers' warnings would drown our output; they show only when a level was asked for
    state["library_level"] = logging.ERROR if quiet or (verbosity is None and not verbose) else level
    return level


def quiet_libraries() -> None:
    """transformers logs at the chosen level (default: errors only); its bars are replaced by ours."""
    import transformers

    transformers.utils.logging.set_verbosity(state["library_level"])
    transformers.utils.logging.disable_progress_bar()


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def info(message: str) -> None:
    if not state["quiet"]:
        err_console.print(message)


@contextmanager
def progress_bar() -> Iterator[Progress]:
    """A Rich progress bar on stderr; silent when stderr is not a terminal or in quiet mode."""
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=err_console,
                        disable=state["quiet"] or not err_console.is_terminal, transient=False)
    with progress:
        yield progress


def run_with_progress(fn, *args, notify=None, **kwargs):
    """Call an API function that reports `(stage, done, total)`, drawing one bar per stage."""
    with progress_bar() as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        extra = {"notify": notify} if notify is not None else {}
        return fn(*args, progress=progress, **extra, **kwargs)
