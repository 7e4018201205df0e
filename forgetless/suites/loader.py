"""Probe suites: a named list of items read from one JSONL file, bundled or the user's own."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from forgetless.errors import ForgetlessError
from forgetless.io import read_jsonl, write_jsonl
from forgetless.registry import did_you_mean
from forgetless.suites.schema import ITEM_TYPES, Item, ItemType, parse_item

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "data" / "suites"


@dataclass(frozen=True)
class Suite:
    """A probe suite. `sha256` fingerprints its content for result files."""

    name: str
    path: Path | None
    items: list[Item] = field(default_factory=list)

    def __post_init__(self) -> None:
        for item in self.items:
            item._suite = self.name  # gives each item its `key`, "suite/id"

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def by_type(self, item_type: ItemType) -> list[Item]:
        return [it for it in self.items if it.type == item_type]

    def categories(self) -> list[str]:
        return sorted({it.category for it in self.items})

    def counts(self) -> dict[str, dict[str, int]]:
        """`{"types": {"mc": 3, "gen": 0, ...}, "categories": {"math": 2, ...}}`."""
        types = Counter(it.type for it in self.items)
        return {
            "types": {t: types[t] for t in ITEM_TYPES},
            "categories": dict(sorted(Counter(it.category for it in self.items).items())),
        }

    @cached_property
    def sha256(self) -> str:
        """Hash of the items in canonical form: independent of line order, key order, spacing and
        defaults written or left out. `meta` is left out: editing a note keeps results comparable."""
        rows = sorted((item.model_dump(mode="json", exclude={"meta"}) for item in self.items), key=lambda d: d["id"])
        canonical = "\n".join(json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=True) for r in rows)
        return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def read_suite(path: str | Path, name: str | None = None) -> Suite:
    """Read and validate a suite file; the first problem raises ForgetlessError naming `file:line`."""
    path = Path(path)
    items: list[Item] = []
    first_line: dict[str, int] = {}
    lineno = 0
    try:
        for lineno, obj in read_jsonl(path):
            where = f"{path}:{lineno}"
            _require_plain_json(obj, where)
            item = parse_item(obj, where)
            if item.id in first_line:
                raise ForgetlessError(
                    f"field 'id': duplicate id {item.id!r}, first used on line {first_line[item.id]}", where=where
                )
            first_line[item.id] = lineno
            items.append(item)
    except RecursionError:
        raise ForgetlessError(f"JSON nested too deeply on a line after line {lineno}", where=path) from None
    return Suite(name=name or path.stem, path=path, items=items)


def _require_plain_json(obj: dict[str, Any], where: str) -> None:
    """Python's json accepts NaN/Infinity and lone surrogate escapes ("\\ud800"); suites may not."""
    try:
        json.dumps(obj, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ForgetlessError("contains a lone surrogate escape such as \\ud800, which is not text", where=where) from None
    except ValueError:
        raise ForgetlessError("NaN and Infinity are not valid JSON numbers", where=where) from None


def write_suite(items: list[Item], path: str | Path) -> None:
    """Write items as a suite file (atomically); `read_suite` gives the same items back."""
    write_jsonl(path, [item.to_dict() for item in items])


def list_bundled_suites() -> list[str]:
    """Names of the suites shipped in `forgetless/data/suites/`."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.jsonl")) if BUNDLED_DIR.is_dir() else []


def load_suite(name_or_path: str | Path) -> Suite:
    """A bundled suite by name ("general"), or a user's JSONL file by path ("my/probes.jsonl")."""
    if _looks_like_path(name_or_path):
        return read_suite(name_or_path)
    name = str(name_or_path)
    bundled = list_bundled_suites()
    if name not in bundled:
        hint = did_you_mean(name, bundled) if bundled else "no suites are bundled"
        raise ForgetlessError(f"unknown suite '{name}'", hint=f"{hint}; or give a path to a .jsonl file")
    return read_suite(BUNDLED_DIR / f"{name}.jsonl", name=name)


def _looks_like_path(name_or_path: str | Path) -> bool:
    if isinstance(name_or_path, Path):
        return True
    s = name_or_path
    return "/" in s or "\\" in s or s.endswith(".jsonl") or Path(s).exists()


def require_items(suite: Suite, item_type: ItemType) -> list[Item]:
    """The suite's items of `item_type`, or a ForgetlessError if it has none."""
    if item_type not in ITEM_TYPES:
        raise ForgetlessError(f"unknown item type '{item_type}'", hint=did_you_mean(item_type, list(ITEM_TYPES)))
    found = suite.by_type(item_type)
    if not found:
        has = ", ".join(f"{n} {t}" for t, n in suite.counts()["types"].items() if n) or "no items"
        raise ForgetlessError(
            f"suite {suite.name} has no items of type {item_type}",
            where=suite.path,
            hint=f"it has {has}; add {item_type} items or choose another suite",
        )
    return found
