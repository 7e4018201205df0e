"""Terminal output shared by all commands: Rich consoles, progress bars, JSON printing.

Progress bars disable themselves when output is not a terminal or `--quiet` is given.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
state = {"quiet": False}


def quiet_libraries() -> None:
    """transformers' own bars and warnings would drown ours."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
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
