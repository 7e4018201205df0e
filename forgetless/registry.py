"""A tiny name -> object registry with "did you mean" on typos (after lm-evaluation-harness)."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

from forgetless.errors import ForgetlessError

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str]) -> str:
    """A short hint naming the closest valid choice, and all of them."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return hint + "available: " + ", ".join(sorted(choices))


class Registry(Generic[T]):
    """Maps names to objects; duplicates are refused, unknown names get a suggestion."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ForgetlessError(f"unknown {self.kind} '{name}'", hint=did_you_mean(name, list(self._items)))
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
