"""The one exception type users see.

Every mistake a user can make (a bad file, a missing model, an impossible config value) becomes a
`ForgetlessError`. The CLI prints it as one line and exits with code 2; no traceback.
"""

from __future__ import annotations

from pathlib import Path


class ForgetlessError(Exception):
    """A user-facing error: what went wrong, where, and (optionally) how to fix it."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | Path | None = None, hint: str | None = None):
        self.message = message
        self.where = str(where) if where is not None else None
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return f"{text} ({self.hint})" if self.hint else text


class Interrupted(ForgetlessError):
    """Ctrl-C during training: a checkpoint was saved and the run can be resumed; exit code 130 like a shell."""

    exit_code = 130


class ForgettingDetected(Exception):
    """Raised by `compare --fail-on-forgetting` style gates; exit code 1."""

    exit_code = 1
