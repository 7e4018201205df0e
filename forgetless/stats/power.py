"""How big a drop can a suite of n items detect? (paired proportions, Connor 1987).

For a paired test of two accuracies (McNemar), what matters is the discordance rate

    psi   = P(item flips) = p10 + p01          (p10 = P(lost), p01 = P(gained))
    delta = p10 - p01 = acc_before - acc_after  (so |delta| <= psi)

and the normal-approximation sample size for a two-sided level-alpha test with the given power is

    n(delta) = (z_{1-alpha/2} sqrt(psi) + z_{power} sqrt(psi - delta^2))^2 / delta^2.

The minimum detectable drop (MDE) inverts this for delta at a fixed n.
"""

from __future__ import annotations

import math

from scipy import stats as sps

from forgetless.errors import ForgetlessError

DEFAULT_P_DISCORDANT = 0.2
"""Flip rate assumed when neither `p_discordant` nor `baseline_acc` is known.

Fine-tunes of one base model typically flip 5-15% of benchmark items; 0.2 is on the pessimistic
side so the MDE is not oversold. Measure it on a pilot run and pass `p_discordant` instead.
"""


def _z_values(alpha: float, power: float) -> tuple[float, float]:
    if not 0.0 < alpha < 1.0:
        raise ForgetlessError(f"alpha must be between 0 and 1 (exclusive), got {alpha}", hint="use e.g. 0.05")
    if not 0.0 < power < 1.0:
        raise ForgetlessError(f"power must be between 0 and 1 (exclusive), got {power}", hint="use e.g. 0.8")
    return float(sps.norm.ppf(1.0 - alpha / 2.0)), float(sps.norm.ppf(power))


def _check_psi(psi: float) -> None:
    if not 0.0 < psi <= 1.0:
        raise ForgetlessError(f"discordance rate must be in (0, 1], got {psi}",
                              hint="p_discordant is the fraction of items whose correctness flips")


def discordance_rate(*, p_discordant: float | None = None, baseline_acc: float | None = None) -> float:
    """The psi to plan with: `p_discordant` if given, else 2 p (1 - p) for baseline accuracy p,
    else `DEFAULT_P_DISCORDANT`.

    2 p (1 - p) is the flip rate if an item's correctness before and after were independent. A
    fine-tuned model's errors are positively correlated with its base model's, so the real rate
    is usually lower and the MDE from this bound is conservative (too large, never too small).
    """
    if p_discordant is not None:
        _check_psi(p_discordant)
        return float(p_discordant)
    if baseline_acc is not None:
        if not 0.0 < baseline_acc < 1.0:
            raise ForgetlessError(f"baseline_acc must be strictly between 0 and 1, got {baseline_acc}",
                                  hint="at 0% or 100% accuracy no flip rate can be derived; pass p_discordant")
        return 2.0 * baseline_acc * (1.0 - baseline_acc)
    return DEFAULT_P_DISCORDANT


def paired_sample_size(delta: float, *, p_discordant: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Items needed to detect a drop `delta` (Connor 1987); unrounded, take ceil() to plan.

        n = (z_{1-alpha/2} sqrt(psi) + z_{power} sqrt(psi - delta^2))^2 / delta^2
    """
    z_a, z_b = _z_values(alpha, power)
    _check_psi(p_discordant)
    if not 0.0 < abs(delta) <= p_discordant:
        raise ForgetlessError(f"need 0 < |delta| <= p_discordant, got delta={delta}, p_discordant={p_discordant}",
                              hint="a drop cannot exceed the fraction of items that flip")
    psi = p_discordant
    return (z_a * math.sqrt(psi) + z_b * math.sqrt(psi - delta * delta)) ** 2 / (delta * delta)


def minimum_detectable_drop(n: int, *, p_discordant: float | None = None, baseline_acc: float | None = None,
                            alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true accuracy drop a paired two-sided test on n items detects with `power`.

    Solving n = n(delta) above for delta (square both sides, take the root that satisfies the
    unsquared equation) gives the closed form

        delta = sqrt(psi) (z_a sqrt(n) + z_b sqrt(n + z_b^2 - z_a^2)) / (n + z_b^2)

    with z_a = z_{1-alpha/2}, z_b = z_{power} and psi from `discordance_rate`. Returns `inf` when
    n <= z_a^2 (about 4 items at alpha = 0.05: no drop is detectable). A result above psi means
    that, at this flip rate, n items cannot detect any achievable drop. Normal approximation:
    optimistic for very small n or psi (fewer than ~10 expected discordant items).
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ForgetlessError(f"n must be a positive integer, got {n!r}")
    z_a, z_b = _z_values(alpha, power)
    psi = discordance_rate(p_discordant=p_discordant, baseline_acc=baseline_acc)
    if n <= z_a * z_a:
        return math.inf
    root = math.sqrt(n + z_b * z_b - z_a * z_a)
    return math.sqrt(psi) * (z_a * math.sqrt(n) + z_b * root) / (n + z_b * z_b)


def minimum_detectable_shift(n: int, *, sd: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """MDE for a mean per-item difference of continuous scores with standard deviation `sd`:

        delta = (z_{1-alpha/2} + z_{power}) sd / sqrt(n)

    (normal approximation to a paired test of the mean). For binary outcomes sd^2 = psi - delta^2,
    so for small drops this agrees with `minimum_detectable_drop`. `inf` for n < 2.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ForgetlessError(f"n must be a positive integer, got {n!r}")
    if not sd >= 0.0:
        raise ForgetlessError(f"sd must be non-negative, got {sd}")
    z_a, z_b = _z_values(alpha, power)
    return math.inf if n < 2 else (z_a + z_b) * sd / math.sqrt(n)
