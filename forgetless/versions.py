"""Library versions recorded in every result, so a number can be traced to the code that made it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

RECORDED = ("forgetless", "torch", "transformers", "peft")


def library_versions(names: tuple[str, ...] = RECORDED) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out
