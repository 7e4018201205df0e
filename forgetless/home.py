"""Where forgetless keeps converted models, caches and its run history.

`FORGETLESS_HOME` moves everything (default: ~/.cache/forgetless).
"""

from __future__ import annotations

import os
from pathlib import Path


def forgetless_home() -> Path:
    return Path(os.environ.get("FORGETLESS_HOME") or Path.home() / ".cache" / "forgetless").expanduser()


def models_cache() -> Path:
    return forgetless_home() / "models"


def folder_size(path: Path) -> int:
    """Total bytes of the files under `path` (0 if it does not exist)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0
