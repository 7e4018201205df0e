"""Numbers as the report prints them; `None`, NaN and inf print as a dash.

Accuracies are fractions: `pct(0.725) == "72.5%"`, and their differences are percentage points:
`pp(0.05) == "+5.0 pp"`. Other units (nats) print as plain signed numbers.
"""

from __future__ import annotations

import math
from typing import Any

from forgetless.report.model import Estimate


def ok(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def pct(x: float | None, digits: int = 1) -> str:
    """0.725 -> '72.5%'."""
    return f"{x * 100:.{digits}f}%" if ok(x) else "–"


def pp(x: float | None, digits: int = 1) -> str:
    """A signed difference of two accuracies in percentage points: 0.05 -> '+5.0 pp'."""
    return f"{x * 100:+.{digits}f} pp" if ok(x) else "–"


def points(x: float | None) -> str:
    """A budget or threshold in percentage points: 0.05 -> '5 pp'."""
    return f"{x * 100:.3g} pp" if ok(x) else "–"


def num(x: float | None, digits: int = 3, signed: bool = False) -> str:
    return (f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}") if ok(x) else "–"


def pval(p: float | None) -> str:
    if not ok(p):
        return "–"
    return "<0.0001" if p < 1e-4 else f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def delta(x: float | None, unit: str = "accuracy") -> str:
    return pp(x) if unit == "accuracy" else num(x, signed=True)


def score(x: float | None, unit: str = "accuracy") -> str:
    return pct(x) if unit == "accuracy" else num(x)


def interval(lo: float | None, hi: float | None, unit: str = "accuracy") -> str:
    if not (ok(lo) and ok(hi)):
        return ""
    if unit == "accuracy":
        return f"[{lo * 100:+.1f}, {hi * 100:+.1f}]"
    return f"[{lo:+.3f}, {hi:+.3f}]"


def estimate(e: Estimate | None) -> str:
    """'+5.0 pp [+1.0, +9.0]' (the interval only when known)."""
    if e is None or not ok(e.value):
        return "–"
    ci = interval(e.ci_low, e.ci_high, e.unit)
    return f"{delta(e.value, e.unit)} {ci}".strip()


def estimate_value(e: Estimate | None) -> str:
    return delta(e.value, e.unit) if e is not None else "–"


def estimate_ci(e: Estimate | None) -> str:
    return interval(e.ci_low, e.ci_high, e.unit) if e is not None else ""


def seconds(s: float | None) -> str:
    if not ok(s):
        return "–"
    if s < 90:
        return f"{s:.1f} s"
    return f"{s / 60:.1f} min" if s < 5400 else f"{s / 3600:.1f} h"
