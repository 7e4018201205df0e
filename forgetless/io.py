"""File helpers: JSONL with line numbers in every error, and atomic writes.

Atomic writes (temporary file in the same folder, then `os.replace`) mean a crash never leaves a
half-written result behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import Any, Iterator

from forgetless.errors import ForgetlessError

BUILTIN_PREFIX = "builtin:"


def resolve_data_path(spec: str | Path) -> Path:
    """A user path, or `builtin:<relative path>` for a file shipped in `forgetless/data/`."""
    spec = str(spec)
    if spec.startswith(BUILTIN_PREFIX):
        return Path(str(files("forgetless") / "data" / spec[len(BUILTIN_PREFIX):]))
    return Path(spec).expanduser()

MAX_LINE_BYTES = 8 * 1024 * 1024  # a JSONL record larger than this is a mistake, not data


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; errors name file and line."""
    path = Path(path)
    if not path.exists():
        raise ForgetlessError("file not found", where=path)
    if path.is_dir():
        raise ForgetlessError("expected a JSONL file, found a folder", where=path)
    seen_any = False
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            if len(raw) > MAX_LINE_BYTES:
                raise ForgetlessError(f"line is {len(raw) // 1_000_000} MB, more than the 8 MB limit", where=where)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ForgetlessError(f"not valid UTF-8 (byte {e.start})", where=where) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ForgetlessError(f"invalid JSON: {e.msg} (column {e.colno})", where=where) from None
            if not isinstance(obj, dict):
                raise ForgetlessError(f"expected a JSON object, got {type(obj).__name__}", where=where)
            seen_any = True
            yield lineno, obj
    if not seen_any:
        raise ForgetlessError("file is empty", where=path)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def write_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def check_output_path(path: str | Path) -> Path:
    """Refuse early an output location that cannot be written, before hours of compute."""
    path = Path(path)
    parent = path.parent if path.suffix else path
    for p in [parent, *parent.parents]:
        if p.exists():
            if not p.is_dir():
                raise ForgetlessError(f"'{p}' is a file, not a folder", where=path)
            if not os.access(p, os.W_OK):
                raise ForgetlessError(f"'{p}' is not writable", where=path)
            break
    if path.is_dir() and path.suffix:
        raise ForgetlessError("output file path is a folder", where=path)
    return path
