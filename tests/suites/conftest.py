"""Shared fixture for the suite tests: write lines to a suite file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest


def _line(obj: dict | str | bytes) -> bytes:
    if isinstance(obj, bytes):
        return obj
    return ((obj if isinstance(obj, str) else json.dumps(obj)) + "\n").encode()


@pytest.fixture
def write_suite_file(tmp_path: Path) -> Callable[..., Path]:
    """Write lines (dicts become JSON, str is written as is, bytes raw) to a .jsonl file."""

    def write(*lines: dict | str | bytes, name: str = "probe.jsonl") -> Path:
        path = tmp_path / name
        path.write_bytes(b"".join(_line(x) for x in lines))
        return path

    return write
