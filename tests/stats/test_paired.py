"""McNemar, sign-flip and interval functions against scipy, brute force and published values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from forgetless.errors import ForgetlessError
from forgetless.stats import (
    PairedCounts,
    mcnemar_exact,
    paired_bootstrap_ci,
    paired_counts,
    paired_newcombe_ci,
    sign_flip_test,
)


def make_pair(n: int, acc: float, flip: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Binary before/after outcomes: `after` flips each item with probability `flip`."""
    rng = np.random.default_rng(seed)
    before = rng.random(n) < acc
    after = before ^ (rng.random(n) < flip)
    return before, after


def from_counts(a: int, b: int, c: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Before/after arrays realising the 2x2 table (both right, lost, gained, both wrong)."""
    before = np.array([True] * a + [True] * b + [False] * c + [False] * d)
    after = np.array([True] * a + [False] * b + [True] * c + [False] * d)
    return before, after


# --- paired_counts -------------------------------------------------------------------------------


def test_paired_counts_fills_the_table():
    before, after = from_counts(5, 3, 2, 4)
    counts = paired_counts(before, after)
    assert counts == PairedCounts(n=14, both_correct=5, lost=3, gained=2, both_wrong=4)
    assert counts.discordant == 5
    assert counts.drop == pytest.approx(1 / 14)


def test_paired_counts_accepts_zero_one_numbers():
    assert paired_counts([1, 0, 1], [1.0, 1.0, 0.0]) == PairedCounts(3, 1, 1, 1, 0)


@pytest.mark.parametrize(
    ("before", "after", "message"),
    [
        ([1, 0], [1], "2 items but after has 1"),
        ([], [], "no items"),
        ([[1, 0]], [[1, 0]], "1-D"),
        ([1.0, float("nan")], [1.0, 0.0], "NaN"),
        ([0.5, 1.0], [1.0, 0.0], "binary"),
    ],
)
def test_paired_counts_rejects_bad_input(before, after, message):
    with pytest.raises(ForgetlessError, match=message):
        paired_counts(np.array(before), np.array(after))


# --- mcnemar_exact -------------------------------------------------------------------------------


@pytest.mark.parametrize(("b", "c"), [(0, 0), (0, 10), (10, 0), (5, 5), (1, 30), (30, 1), (3, 9), (50, 70)])
def test_mcnemar_matches_scipy_binomtest(b, c):
    expected = 1.0 if b + c == 0 else sps.binomtest(b, b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_mcnemar_matches_scipy_on_a_grid():
    for b, c in itertools.product(range(26), repeat=2):
        if b + c:
            assert mcnemar_exact(b, c) == pytest.approx(sps.binomtest(b, b + c, 0.5).pvalue, rel=1e-9)


def test_mcnemar_extremes():
    assert mcnemar_exact(7, 7) == 1.0  # all discordant pairs cancel
    before = np.ones(50, dtype=bool)
    counts = paired_counts(before, ~before)  # every item lost
    assert mcnemar_exact(counts.lost, counts.gained) == pytest.approx(2 * 0.5**50)
    assert mcnemar_exact(0, 5) == pytest.approx(0.0625)  # 5 flips can never reach p < 0.05


@pytest.mark.parametrize("bad", [-1, 2.5, True])
def test_mcnemar_rejects_non_counts(bad):
    with pytest.raises(ForgetlessError):
        mcnemar_exact(bad, 3)


# --- sign_flip_test ------------------------------------------------------------------------------


def brute_force_sign_flip(d: np.ndarray) -> float:
    """Enumerate every sign pattern over all items (zeros included) in plain Python."""
    observed = abs(sum(d))
    hits = sum(abs(sum(s * x for s, x in zip(signs, d))) >= observed - 1e-9
               for signs in itertools.product((-1, 1), repeat=len(d)))
    return hits / 2 ** len(d)


def test_sign_flip_exact_matches_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(5):
        before, after = rng.normal(size=9), rng.normal(size=9)
        after[:2] = before[:2]  # some zero differences
        assert sign_flip_test(before, after, rng=0) == pytest.approx(brute_force_sign_flip(before - after))


@pytest.mark.parametrize(("b", "c"), [(0, 0), (4, 4), (0, 6), (2, 9), (12, 3), (16, 0)])
def test_sign_flip_on_binary_equals_mcnemar(b, c):
    before, after = from_counts(10, b, c, 7)
    assert sign_flip_test(before, after, rng=0) == pytest.approx(mcnemar_exact(b, c), rel=1e-12)


def test_sign_flip_monte_carlo_is_close_to_mcnemar_and_valid():
    before, after = from_counts(200, 40, 22, 100)
    p = sign_flip_test(before, after, rng=1, n_resamples=20_000)
    assert p == pytest.approx(mcnemar_exact(40, 22), abs=0.01)
    assert p >= 1 / 20_001  # Monte Carlo p-values are never exactly zero
    assert sign_flip_test(before, after, rng=1, n_resamples=2_000) == sign_flip_test(
        before, after, rng=np.random.default_rng(1), n_resamples=2_000)


# --- paired_bootstrap_ci -------------------------------------------------------------------------


def brute_force_bootstrap(before, after, *, n_resamples, confidence, seed):
    """Same index draws as the vectorised version, then one Python loop per resample."""
    d = [float(x) - float(y) for x, y in zip(before, after)]
    n = len(d)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    drops = sorted(sum(d[i] for i in row) / n for row in idx)
    k = math.floor(n_resamples * (1 - confidence) / 2)
    return drops[k], drops[n_resamples - 1 - k]


def test_bootstrap_matches_brute_force_loop():
    before, after = make_pair(40, 0.7, 0.2, seed=0)
    fast = paired_bootstrap_ci(before, after, rng=5, n_resamples=999, confidence=0.9)
    slow = brute_force_bootstrap(before, after, n_resamples=999, confidence=0.9, seed=5)
    assert fast == pytest.approx(slow, abs=1e-12)


def test_bootstrap_contains_drop_and_is_reproducible():
    before, after = make_pair(600, 0.7, 0.1, seed=1)
    drop = paired_counts(before, after).drop
    low, high = paired_bootstrap_ci(before, after, rng=np.random.default_rng(9))
    assert low <= drop <= high
    assert (low, high) == paired_bootstrap_ci(before, after, rng=9)
    assert (low, high) != paired_bootstrap_ci(before, after, rng=10)


def test_bootstrap_swap_negates_exactly():
    before, after = make_pair(300, 0.6, 0.15, seed=2)
    low, high = paired_bootstrap_ci(before, after, rng=4)
    assert paired_bootstrap_ci(after, before, rng=4) == (-high, -low)


def test_bootstrap_narrows_with_n():
    widths = []
    for n in (100, 400, 1600):
        before, after = make_pair(n, 0.7, 0.1, seed=n)
        low, high = paired_bootstrap_ci(before, after, rng=0, n_resamples=4000)
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] == pytest.approx(4, rel=0.35)  # width ~ 1 / sqrt(n)


def test_bootstrap_degenerate_pairs_give_a_point():
    before, _ = make_pair(50, 0.5, 0.0, seed=3)
    assert paired_bootstrap_ci(before, before, rng=0) == (0.0, 0.0)
    scores = np.linspace(-2, 0, 7)
    low, high = paired_bootstrap_ci(scores, scores - 0.25, rng=0)
    assert low == high == pytest.approx(0.25)


def test_bootstrap_on_continuous_scores():
    rng = np.random.default_rng(11)
    before = rng.normal(-1.0, 0.3, size=500)  # e.g. per-item log-likelihoods
    after = before - 0.05 + rng.normal(0, 0.1, size=500)
    low, high = paired_bootstrap_ci(before, after, rng=0)
    assert low < np.mean(before - after) < high
    assert 0.03 < low < high < 0.07


def test_bootstrap_chunks_large_inputs():
    before, after = make_pair(20_000, 0.8, 0.05, seed=4)  # 200 rows per chunk -> 10 chunks
    low, high = paired_bootstrap_ci(before, after, rng=0, n_resamples=2000)
    assert low <= paired_counts(before, after).drop <= high
    assert high - low < 0.01


def test_bootstrap_agrees_with_newcombe_for_moderate_n():
    before, after = make_pair(800, 0.7, 0.12, seed=5)
    boot = paired_bootstrap_ci(before, after, rng=0)
    newcombe = paired_newcombe_ci(paired_counts(before, after))
    assert boot == pytest.approx(newcombe, abs=0.004)


@pytest.mark.parametrize(("kwargs", "message"), [({"confidence": 1.0}, "confidence"),
                                                 ({"n_resamples": 0}, "n_resamples"),
                                                 ({"rng": None}, "rng")])
def test_bootstrap_rejects_bad_settings(kwargs, message):
    before, after = make_pair(10, 0.5, 0.5, seed=0)
    with pytest.raises(ForgetlessError, match=message):
        paired_bootstrap_ci(before, after, **{"rng": 0, **kwargs})


# --- paired_newcombe_ci --------------------------------------------------------------------------


def test_newcombe_matches_published_example():
    # Cavo et al. (2012) in Fagerland, Lydersen & Laake (2017), ch. 8: -0.0621 (-0.1186 to -0.0046)
    counts = PairedCounts(n=161, both_correct=59, lost=6, gained=16, both_wrong=80)
    low, high = paired_newcombe_ci(counts)
    assert counts.drop == pytest.approx(-0.0621, abs=5e-5)
    assert (low, high) == pytest.approx((-0.1186, -0.0046), abs=5e-5)


def test_newcombe_basic_properties():
    for a, b, c, d in [(10, 0, 0, 10), (0, 5, 0, 0), (30, 4, 9, 7), (3, 20, 1, 0)]:
        counts = PairedCounts(a + b + c + d, a, b, c, d)
        low, high = paired_newcombe_ci(counts)
        assert -1 <= low <= counts.drop <= high <= 1
        assert low < high  # never collapses, even with no discordant pairs
        swapped = paired_newcombe_ci(PairedCounts(counts.n, a, c, b, d))
        assert swapped == pytest.approx((-high, -low), abs=1e-12)


def test_newcombe_approaches_wald_for_large_n():
    counts = PairedCounts(n=20_000, both_correct=12_000, lost=1_500, gained=1_100, both_wrong=5_400)
    n, b, c = counts.n, counts.lost, counts.gained
    half = 1.959963984540054 * math.sqrt(b + c - (b - c) ** 2 / n) / n
    assert paired_newcombe_ci(counts) == pytest.approx((counts.drop - half, counts.drop + half), abs=3e-4)
