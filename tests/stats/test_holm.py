"""Holm-Bonferroni against a brute-force step-down procedure and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from forgetless.errors import ForgetlessError
from forgetless.stats import holm


def brute_force_holm(pvalues: list[float]) -> list[float]:
    """Adjusted p = the smallest alpha at which the step-down procedure rejects the hypothesis.

    The set of rejections only changes at alpha = (m - j + 1) p_(j), so trying those levels (and 1)
    in increasing order and running the textbook procedure at each finds that smallest alpha.
    """
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    levels = sorted({min(1.0, (m - j) * pvalues[i]) for j, i in enumerate(order)} | {1.0})

    def rejected(alpha: float) -> set[int]:
        out = set()
        for j, i in enumerate(order):  # reject p_(j+1) while p_(j+1) * (m - j) <= alpha
            if pvalues[i] * (m - j) > alpha:
                break
            out.add(i)
        return out

    adjusted = [1.0] * m
    for alpha in reversed(levels):  # the last level that still rejects i is the smallest one
        for i in rejected(alpha):
            adjusted[i] = alpha
    return adjusted


def test_wikipedia_example():
    # four hypotheses at alpha = 0.05: Holm rejects H1 and H4 only
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [p < 0.05 for p in adjusted] == [True, False, False, True]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([], []),
        ([0.2], [0.2]),
        ([0.001, 0.5, 0.02], [0.003, 0.5, 0.04]),
        ([0.6, 0.7], [1.0, 1.0]),  # capped at 1
        ([0.01, 0.01, 0.01], [0.03, 0.03, 0.03]),  # ties share one value
        ([0.0, 1.0], [0.0, 1.0]),
    ],
)
def test_hand_computed_values(raw, expected):
    assert holm(raw) == pytest.approx(expected)


def test_matches_brute_force():
    rng = np.random.default_rng(0)
    for m in range(1, 9):
        for _ in range(25):
            raw = list(rng.choice([0.001, 0.01, 0.02, 0.3], size=m)) if m % 2 else list(rng.random(m) ** 3)
            assert holm(raw) == pytest.approx(brute_force_holm(raw), rel=1e-12)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_rejects_values_outside_unit_interval(bad):
    with pytest.raises(ForgetlessError, match="#1"):
        holm([0.5, bad])
