"""One suite's before/after comparison in one record, and the verdict drawn from it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from forgetless.errors import ForgetlessError
from forgetless.stats.paired import (
    as_generator,
    as_paired_arrays,
    check_confidence,
    is_binary,
    mcnemar_exact,
    paired_bootstrap_ci,
    paired_counts,
    sign_flip_test,
)
from forgetless.stats.power import minimum_detectable_drop, minimum_detectable_shift

Verdict = Literal["forgetting", "no_forgetting", "inconclusive"]


@dataclass(frozen=True)
class DropStats:
    """Everything a report says about one suite, and everything the numbers depend on.

    For continuous scores `acc_before`/`acc_after` are mean scores, `lost`/`gained` count items
    whose score went down/up, and `mde` is in score units.
    """

    n: int
    kind: Literal["binary", "continuous"]
    acc_before: float
    acc_after: float
    drop: float  # acc_before - acc_after; positive = forgetting
    ci_low: float
    ci_high: float
    p_value: float  # two-sided, unadjusted
    p_value_method: Literal["mcnemar_exact", "sign_flip"]
    lost: int
    gained: int
    mde: float  # minimum detectable drop at (alpha, power); inf if none is detectable
    confidence: float
    n_resamples: int
    alpha: float
    power: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict (non-finite floats become None)."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DropStats:
        """Inverse of `to_dict` (a missing `mde` reads back as inf)."""
        return cls(**{**data, "mde": math.inf if data.get("mde") is None else data["mde"]})


def summarize_drop(before: np.ndarray, after: np.ndarray, *, rng: np.random.Generator | int,
                   confidence: float = 0.95, n_resamples: int = 10_000,
                   alpha: float = 0.05, power: float = 0.8) -> DropStats:
    """Drop, bootstrap CI, p-value and MDE for one suite scored before and after fine-tuning.

    - drop = mean(before - after); CI from `paired_bootstrap_ci` (drawn first from `rng`).
    - Binary outcomes (bool or all 0/1): p = exact McNemar on (lost, gained); mde from
      `minimum_detectable_drop` with the observed flip rate psi = (lost + gained) / n, floored at
      the rule-of-three bound min(1, 3 / n) so a suite with no observed flips is not credited
      with infinite sensitivity.
    - Continuous scores: p = paired sign-flip test on sum(d) (exact for <= 16 non-zero
      differences, else `n_resamples` Monte Carlo draws from `rng` after the bootstrap); it makes
      no normality assumption and equals McNemar on 0/1 data. mde = (z_a + z_b) sd(d) / sqrt(n).
    """
    check_confidence(confidence)
    b, a = as_paired_arrays(before, after)
    gen = as_generator(rng)
    d = b - a
    n = int(d.size)
    low, high = paired_bootstrap_ci(b, a, rng=gen, n_resamples=n_resamples, confidence=confidence)
    common = dict(n=n, acc_before=float(np.mean(b)), acc_after=float(np.mean(a)), drop=float(np.mean(d)),
                  ci_low=low, ci_high=high, confidence=confidence, n_resamples=n_resamples,
                  alpha=alpha, power=power)
    if is_binary(b) and is_binary(a):
        counts = paired_counts(b, a)
        psi = max(counts.discordant / n, min(1.0, 3.0 / n))
        return DropStats(**common, kind="binary", p_value=mcnemar_exact(counts.lost, counts.gained),
                         p_value_method="mcnemar_exact", lost=counts.lost, gained=counts.gained,
                         mde=minimum_detectable_drop(n, p_discordant=psi, alpha=alpha, power=power))
    sd = float(np.std(d, ddof=1)) if n > 1 else 0.0
    return DropStats(**common, kind="continuous",
                     p_value=sign_flip_test(b, a, rng=gen, n_resamples=n_resamples),
                     p_value_method="sign_flip", lost=int(np.sum(d > 0)), gained=int(np.sum(d < 0)),
                     mde=minimum_detectable_shift(n, sd=sd, alpha=alpha, power=power))


def verdict(stats: DropStats, threshold: float, *, p_value: float | None = None, alpha: float = 0.05) -> Verdict:
    """Classify a drop against the largest drop the user can tolerate, `threshold` (accuracy units).

    - "forgetting":    drop >= threshold AND p < alpha AND ci_low > 0. The drop is real (the test
                       and the interval both exclude zero) and its best estimate is at least as
                       large as the threshold.
    - "no_forgetting": ci_high < threshold. The interval rules out a drop as large as the
                       threshold; a smaller real drop may remain ("no forgetting that matters").
    - "inconclusive":  anything else; the suite is too small or noisy to tell. Compare `mde`.

    Pass `p_value=` to use an adjusted p-value (e.g. from `holm` across suites) instead of
    `stats.p_value`. The interval is not adjusted; for family-wise control of "no_forgetting"
    too, build the stats with a Bonferroni confidence such as 1 - alpha / n_suites.
    """
    if not threshold >= 0.0:
        raise ForgetlessError(f"threshold must be a non-negative drop, got {threshold}",
                              hint="e.g. 0.02 means 'forgetting is a loss of 2 accuracy points or more'")
    p = stats.p_value if p_value is None else p_value
    if stats.drop >= threshold and p < alpha and stats.ci_low > 0.0:
        return "forgetting"
    if stats.ci_high < threshold:
        return "no_forgetting"
    return "inconclusive"
