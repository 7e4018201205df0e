"""Minimum detectable drop: closed form vs the sample-size formula, and a power simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from forgetless.errors import ForgetlessError
from forgetless.stats import (
    DEFAULT_P_DISCORDANT,
    discordance_rate,
    minimum_detectable_drop,
    minimum_detectable_shift,
    paired_sample_size,
)


def test_sample_size_worked_example():
    # psi = 0.2, delta = 0.1, alpha = 0.05, power = 0.8:
    # (1.95996 * sqrt(0.2) + 0.84162 * sqrt(0.19))^2 / 0.01 = (0.87652 + 0.36686)^2 / 0.01 = 154.6
    assert paired_sample_size(0.1, p_discordant=0.2) == pytest.approx(154.60, abs=0.01)


@pytest.mark.parametrize("psi", [0.05, 0.2, 0.5, 1.0])
@pytest.mark.parametrize(("alpha", "power"), [(0.05, 0.8), (0.01, 0.9), (0.05, 0.5), (0.1, 0.3)])
def test_mde_inverts_sample_size(psi, alpha, power):
    for n in (10, 50, 600, 10_000):
        mde = minimum_detectable_drop(n, p_discordant=psi, alpha=alpha, power=power)
        if mde <= psi:  # larger answers mean no achievable drop is detectable
            assert paired_sample_size(mde, p_discordant=psi, alpha=alpha, power=power) == pytest.approx(n, rel=1e-9)


def test_mde_decreases_with_n_and_grows_with_psi():
    ns = [5, 10, 30, 100, 600, 5000]
    for psi in (0.05, 0.2, 0.5):
        mdes = [minimum_detectable_drop(n, p_discordant=psi) for n in ns]
        assert all(x > y for x, y in zip(mdes, mdes[1:]))
    assert minimum_detectable_drop(600, p_discordant=0.1) < minimum_detectable_drop(600, p_discordant=0.3)
    # roughly (z_a + z_b) sqrt(psi / n) for large n
    expected = 2.8016 * math.sqrt(0.2 / 10_000)
    assert minimum_detectable_drop(10_000, p_discordant=0.2) == pytest.approx(expected, rel=0.01)


def test_mde_has_the_promised_power_by_simulation():
    n, psi = 600, 0.1
    delta = minimum_detectable_drop(n, p_discordant=psi)
    rng = np.random.default_rng(0)
    counts = rng.multinomial(n, [(psi + delta) / 2, (psi - delta) / 2, 1 - psi], size=4000)  # lost, gained, tied
    b, c = counts[:, 0], counts[:, 1]
    p = np.minimum(1.0, 2 * sps.binom.cdf(np.minimum(b, c), b + c, 0.5))  # exact McNemar
    assert np.mean(p < 0.05) == pytest.approx(0.8, abs=0.04)


def test_tiny_suites_detect_nothing():
    assert minimum_detectable_drop(3) == math.inf
    assert math.isfinite(minimum_detectable_drop(4))


def test_discordance_defaults():
    assert discordance_rate(p_discordant=0.07, baseline_acc=0.9) == 0.07
    assert discordance_rate(baseline_acc=0.9) == pytest.approx(0.18)
    assert discordance_rate() == DEFAULT_P_DISCORDANT
    assert minimum_detectable_drop(600, baseline_acc=0.5) == minimum_detectable_drop(600, p_discordant=0.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"baseline_acc": 1.0}, "baseline_acc"),
        ({"p_discordant": 0.0}, "discordance"),
        ({"alpha": 0.0}, "alpha"),
        ({"power": 1.0}, "power"),
    ],
)
def test_mde_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ForgetlessError, match=message):
        minimum_detectable_drop(100, **kwargs)


def test_sample_size_rejects_impossible_drop():
    with pytest.raises(ForgetlessError, match="cannot exceed"):
        paired_sample_size(0.3, p_discordant=0.2)


def test_minimum_detectable_shift():
    assert minimum_detectable_shift(400, sd=0.5) == pytest.approx(2.8016 * 0.5 / 20, rel=1e-4)
    assert minimum_detectable_shift(1, sd=0.5) == math.inf
    assert minimum_detectable_shift(100, sd=1.0) > minimum_detectable_shift(400, sd=1.0)
