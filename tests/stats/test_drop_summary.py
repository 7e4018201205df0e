"""summarize_drop wires the pieces together; verdict applies the documented rule."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from forgetless.errors import ForgetlessError
from forgetless.stats import (
    DropStats,
    mcnemar_exact,
    minimum_detectable_drop,
    paired_bootstrap_ci,
    paired_counts,
    sign_flip_test,
    summarize_drop,
    verdict,
)


def make_pair(n: int, acc: float, lose: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """After loses each right answer with probability `lose` and gains wrong ones at 5%."""
    rng = np.random.default_rng(seed)
    before = rng.random(n) < acc
    after = np.where(before, rng.random(n) >= lose, rng.random(n) < 0.05)
    return before, after


def test_binary_summary_is_consistent_with_the_parts():
    before, after = make_pair(600, 0.7, 0.1, seed=0)
    stats = summarize_drop(before, after, rng=3)
    counts = paired_counts(before, after)
    assert stats.kind == "binary" and stats.p_value_method == "mcnemar_exact"
    assert (stats.n, stats.lost, stats.gained) == (600, counts.lost, counts.gained)
    assert stats.acc_before == pytest.approx(before.mean()) and stats.acc_after == pytest.approx(after.mean())
    assert stats.drop == counts.drop
    assert (stats.ci_low, stats.ci_high) == paired_bootstrap_ci(before, after, rng=3)  # bootstrap draws first
    assert stats.p_value == mcnemar_exact(counts.lost, counts.gained)
    assert stats.mde == minimum_detectable_drop(600, p_discordant=counts.discordant / 600)


def test_no_flips_uses_rule_of_three_for_mde():
    before = np.arange(300) % 3 == 0
    stats = summarize_drop(before, before, rng=0)
    assert (stats.drop, stats.ci_low, stats.ci_high, stats.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert stats.mde == minimum_detectable_drop(300, p_discordant=3 / 300)


def test_continuous_summary_uses_sign_flip():
    rng = np.random.default_rng(1)
    before = rng.normal(-1.2, 0.4, size=400)  # per-item log-likelihood, higher is better
    after = before - 0.08 + rng.normal(0, 0.2, size=400)
    stats = summarize_drop(before, after, rng=5, n_resamples=2000)
    assert stats.kind == "continuous" and stats.p_value_method == "sign_flip"
    assert stats.lost + stats.gained == 400
    assert stats.drop == pytest.approx(0.08, abs=0.03)
    assert stats.ci_low < stats.drop < stats.ci_high
    assert stats.p_value < 0.01
    gen = np.random.default_rng(5)
    paired_bootstrap_ci(before, after, rng=gen, n_resamples=2000)
    assert stats.p_value == sign_flip_test(before, after, rng=gen, n_resamples=2000)


def test_to_dict_is_json_and_round_trips():
    before, after = make_pair(200, 0.6, 0.1, seed=2)
    stats = summarize_drop(before, after, rng=0, n_resamples=1000)
    data = json.loads(json.dumps(stats.to_dict(), allow_nan=False))
    assert DropStats.from_dict(data) == stats
    tiny = summarize_drop([True, True, False], [False, True, False], rng=0, n_resamples=100)
    assert tiny.mde == math.inf and tiny.to_dict()["mde"] is None
    assert DropStats.from_dict(json.loads(json.dumps(tiny.to_dict()))) == tiny


def template(**changes) -> DropStats:
    base = DropStats(n=1000, kind="binary", acc_before=0.7, acc_after=0.65, drop=0.05, ci_low=0.03,
                     ci_high=0.07, p_value=0.001, p_value_method="mcnemar_exact", lost=80, gained=30,
                     mde=0.03, confidence=0.95, n_resamples=10_000, alpha=0.05, power=0.8)
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(
    ("changes", "threshold", "expected"),
    [
        ({}, 0.02, "forgetting"),  # significant, estimate above threshold
        ({}, 0.05, "forgetting"),  # drop == threshold counts
        ({}, 0.06, "inconclusive"),  # real drop, estimate below threshold, CI reaches it
        ({}, 0.08, "no_forgetting"),  # real but smaller than any drop that matters
        ({"p_value": 0.2}, 0.02, "inconclusive"),  # the test disagrees with the interval
        ({"drop": 0.0, "ci_low": -0.01, "ci_high": 0.01, "p_value": 1.0}, 0.02, "no_forgetting"),
        ({"drop": 0.01, "ci_low": -0.03, "ci_high": 0.05, "p_value": 0.6}, 0.02, "inconclusive"),
        ({"drop": -0.04, "ci_low": -0.06, "ci_high": -0.02, "p_value": 0.001}, 0.0, "no_forgetting"),
    ],
)
def test_verdict_rule(changes, threshold, expected):
    assert verdict(template(**changes), threshold) == expected


def test_verdict_uses_adjusted_p_value():
    stats = template(p_value=0.01)
    assert verdict(stats, 0.02) == "forgetting"
    assert verdict(stats, 0.02, p_value=0.06) == "inconclusive"  # e.g. after holm over 6 suites
    assert verdict(stats, 0.02, p_value=0.02, alpha=0.01) == "inconclusive"


def test_verdict_rejects_negative_threshold():
    with pytest.raises(ForgetlessError, match="threshold"):
        verdict(template(), -0.01)


def test_verdict_end_to_end():
    big_drop = summarize_drop(*make_pair(1000, 0.7, 0.15, seed=3), rng=0)
    assert verdict(big_drop, 0.03) == "forgetting"
    same = summarize_drop(*make_pair(3000, 0.7, 0.02, seed=4), rng=0)  # ~1.4% lose, ~1.5% gain
    assert verdict(same, 0.03) == "no_forgetting"
    small = summarize_drop(*make_pair(40, 0.7, 0.05, seed=5), rng=0)
    assert verdict(small, 0.03) == "inconclusive"
