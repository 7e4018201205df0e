"""Multiple-comparison corrections: many suites tested at once must not cry "forgetting" by luck."""

from __future__ import annotations

import math
from collections.abc import Sequence

from forgetless.errors import ForgetlessError


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, returned in the input order.

    Sort the m p-values ascending, p_(1) <= ... <= p_(m); then (1-indexed)

        adj_(i) = min(1, max_{j <= i} (m - j + 1) p_(j))

    Rejecting every hypothesis with adj < alpha is Holm's step-down procedure: it controls the
    family-wise error rate at alpha under any dependence between the tests. The adjusted values
    are monotone in the raw ones, never smaller than them, and at most 1.
    """
    ps = [float(p) for p in pvalues]
    for i, p in enumerate(ps):
        if math.isnan(p) or not 0.0 <= p <= 1.0:
            raise ForgetlessError(f"p-value #{i} is {p}, outside [0, 1]")
    m = len(ps)
    order = sorted(range(m), key=ps.__getitem__)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):  # rank = j - 1
        running = max(running, min(1.0, (m - rank) * ps[i]))
        adjusted[i] = running
    return adjusted
