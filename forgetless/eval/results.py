"""The results file of `forgetless eval`: per-item outcomes plus everything they depend on.

Items are keyed by `suite/id`, so `compare` can pair before and after item by item and refuse
results that were not produced by the same suites and prompt rendering.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forgetless.errors import ForgetlessError
from forgetless.io import atomic_write_text

FORMAT_VERSION = 1


class CheckOutcome(BaseModel):
    kind: str
    passed: bool
    describe: str


class ItemResult(BaseModel):
    """One probe item's outcome. Fields not used by an item's type stay None."""

    model_config = ConfigDict(extra="forbid")

    suite: str
    id: str
    type: Literal["mc", "gen", "check", "text"]
    category: str
    prompt: str  # the exact rendered text the model saw (mc: the context)
    correct: bool | None = None  # mc: log-likelihood acc; gen: answer matched; check: every check passed
    # multiple choice (knowledge)
    choices: list[str] | None = None
    answer: int | None = None
    logliks: list[float] | None = None
    pred: int | None = None
    correct_norm: bool | None = None
    # generation (behaviour): gen and check replies, and the open-ended twin of mc items
    reply: str | None = None
    open_correct: bool | None = None
    checks: list[CheckOutcome] | None = None
    severity: str | None = None
    # text (drift)
    tokens: int | None = None
    nll: float | None = None
    kl: float | None = None

    @property
    def key(self) -> str:
        return f"{self.suite}/{self.id}"


class SuiteRecord(BaseModel):
    name: str
    path: str | None
    sha256: str
    counts: dict[str, dict[str, int]]


class EvalResult(BaseModel):
    """What `forgetless eval` writes. `settings` and `suites` must match for two results to be compared."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    model: dict[str, Any]
    reference: dict[str, Any] | None = None
    suites: list[SuiteRecord]
    settings: dict[str, Any]
    versions: dict[str, str | None]
    summary: dict[str, Any] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    training: dict[str, Any] | None = None  # the run's config and data, when the model came from a run
    items: list[ItemResult]

    def by_key(self) -> dict[str, ItemResult]:
        return {it.key: it for it in self.items}

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, self.model_dump_json(indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "EvalResult":
        path = Path(path)
        if not path.is_file():
            raise ForgetlessError("results file not found", where=path)
        try:
            return cls.model_validate_json(path.read_bytes())
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise ForgetlessError(f"not a forgetless results file: {loc}: {err['msg']}", where=path) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ForgetlessError(f"not a forgetless results file ({e})", where=path) from None
