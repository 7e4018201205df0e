"""Shared helpers for the suite tests: valid example items and a suite-file writer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

MC = {
    "id": "mc1",
    "type": "mc",
    "category": "geography",
    "question": "What is the capital of France?",
    "choices": ["Paris", "London", "Rome", "Berlin"],
    "answer": 0,
}
GEN = {"id": "gen1", "type": "gen", "category": "math", "prompt": "What is 7 times 6?", "answers": ["42"], "match": "number"}
CHECK = {
    "id": "chk1",
    "type": "check",
    "category": "format",
    "prompt": "Name a fruit.",
    "checks": [{"kind": "max_words", "n": 5}, {"kind": "regex", "pattern": "^[A-Z]"}],
}
TEXT = {"id": "txt1", "type": "text", "category": "prose", "text": "The quick brown fox jumps over the lazy dog."}


def line(obj: dict | str) -> str:
    return obj if isinstance(obj, str) else json.dumps(obj)


@pytest.fixture
def write_suite_file(tmp_path: Path) -> Callable[..., Path]:
    """Write lines (dicts become JSON, str is written as is, bytes raw) to a .jsonl file."""

    def write(*lines: dict | str | bytes, name: str = "probe.jsonl") -> Path:
        path = tmp_path / name
        path.write_bytes(b"".join(x if isinstance(x, bytes) else (line(x) + "\n").encode() for x in lines))
        return path

    return write
