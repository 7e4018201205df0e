"""Hypothesis properties: intervals contain the estimate, p-values are probabilities, and
swapping before and after mirrors every result exactly."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from forgetless.stats import (
    holm,
    mcnemar_exact,
    paired_bootstrap_ci,
    paired_counts,
    paired_newcombe_ci,
    sign_flip_test,
    summarize_drop,
    verdict,
)

FAST = settings(max_examples=60, deadline=None)
seeds = st.integers(0, 2**32 - 1)


@st.composite
def binary_pairs(draw, max_n: int = 80) -> tuple[np.ndarray, np.ndarray]:
    pairs = draw(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=max_n))
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


@st.composite
def score_pairs(draw, max_n: int = 80) -> tuple[np.ndarray, np.ndarray]:
    scores = st.floats(-20, 20, allow_nan=False, allow_infinity=False)
    pairs = draw(st.lists(st.tuples(scores, scores), min_size=1, max_size=max_n))
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


any_pairs = st.one_of(binary_pairs(), score_pairs())


@FAST
@given(any_pairs, seeds)
def test_bootstrap_ci_contains_observed_drop(pair, seed):
    before, after = pair
    low, high = paired_bootstrap_ci(before, after, rng=seed, n_resamples=400)
    drop = float(np.mean(before.astype(float) - after.astype(float)))
    assert low - 1e-9 <= drop <= high + 1e-9


@FAST
@given(binary_pairs())
def test_newcombe_ci_contains_observed_drop(pair):
    counts = paired_counts(*pair)
    low, high = paired_newcombe_ci(counts)
    assert -1.0 <= low <= counts.drop <= high <= 1.0


@FAST
@given(st.integers(0, 300), st.integers(0, 300))
def test_mcnemar_is_a_symmetric_probability_equal_to_binomtest(b, c):
    p = mcnemar_exact(b, c)
    assert 0.0 <= p <= 1.0
    assert p == mcnemar_exact(c, b)
    if b + c:
        assert np.isclose(p, sps.binomtest(b, b + c, 0.5).pvalue, rtol=1e-9, atol=0)


@FAST
@given(score_pairs(max_n=40), seeds)
def test_sign_flip_is_a_symmetric_probability(pair, seed):
    before, after = pair
    p = sign_flip_test(before, after, rng=seed, n_resamples=300)
    assert 0.0 < p <= 1.0
    assert p == sign_flip_test(after, before, rng=seed, n_resamples=300)


@FAST
@given(any_pairs, seeds)
def test_swapping_before_and_after_mirrors_the_summary(pair, seed):
    before, after = pair
    fwd = summarize_drop(before, after, rng=seed, n_resamples=300)
    rev = summarize_drop(after, before, rng=seed, n_resamples=300)
    assert rev.drop == -fwd.drop
    assert (rev.ci_low, rev.ci_high) == (-fwd.ci_high, -fwd.ci_low)
    assert rev.p_value == fwd.p_value
    assert 0.0 <= fwd.p_value <= 1.0
    assert (rev.lost, rev.gained) == (fwd.gained, fwd.lost)
    assert (rev.acc_before, rev.acc_after) == (fwd.acc_after, fwd.acc_before)
    assert rev.mde == fwd.mde


@FAST
@given(any_pairs, seeds, st.floats(0.0, 0.5))
def test_verdict_agrees_with_its_interval(pair, seed, threshold):
    stats = summarize_drop(*pair, rng=seed, n_resamples=300)
    word = verdict(stats, threshold)
    if word == "forgetting":
        assert stats.ci_low > 0 and stats.drop >= threshold and stats.p_value < 0.05
    elif word == "no_forgetting":
        assert stats.ci_high < threshold


@FAST
@given(st.lists(st.floats(0.0, 1.0), max_size=12))
def test_holm_is_monotone_capped_and_never_below_raw(pvalues):
    adjusted = holm(pvalues)
    assert len(adjusted) == len(pvalues)
    for p, q in zip(pvalues, adjusted):
        assert p <= q <= 1.0
    for i, j in ((i, j) for i in range(len(pvalues)) for j in range(len(pvalues))):
        if pvalues[i] <= pvalues[j]:
            assert adjusted[i] <= adjusted[j]
