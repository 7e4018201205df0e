"""Paired tests and intervals for "did the model get worse on the same items?".

Every function takes the per-item results of one model *before* and *after* fine-tuning, on the
same n items in the same order. Outcomes are either binary (right/wrong: a bool array, or numbers
that are all 0 or 1) or continuous scores where higher is better (per-item log-likelihood, ...;
negate a lower-is-better score such as KL before passing it in).

Notation used in the docstrings, for item i:

    d_i  = before_i - after_i           (per-item drop; positive = forgetting)
    drop = mean(d) = mean(before) - mean(after)

and for binary outcomes the 2x2 table

                     after right    after wrong
    before right     a (both)       b (lost)
    before wrong     c (gained)     d (both wrong)

Pairing is the point: only the discordant items (b + c) carry information about a change, so a
paired test is far more sensitive than comparing two accuracies as if they were independent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from forgetless.errors import ForgetlessError

# Largest number of array elements one vectorised resampling chunk may hold (~32 MB of float64).
_CHUNK_ELEMENTS = 4_000_000
# Sign-flip tests on at most this many non-zero differences enumerate all 2^m sign patterns.
_EXACT_SIGN_FLIP_MAX = 16


def as_generator(rng: np.random.Generator | int) -> np.random.Generator:
    """The generator itself, or a fresh `np.random.default_rng(seed)` for an int seed."""
    if isinstance(rng, (bool, np.bool_)) or not isinstance(rng, (np.random.Generator, int, np.integer)):
        raise ForgetlessError(f"rng must be a numpy Generator or an int seed, got {rng!r}",
                              hint="pass rng=np.random.default_rng(0) or rng=0")
    return np.random.default_rng(rng)


def as_paired_arrays(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert a before/after pair to two equal-length 1-D float64 arrays."""
    b = np.asarray(before)
    a = np.asarray(after)
    if b.ndim != 1 or a.ndim != 1:
        raise ForgetlessError(f"before and after must be 1-D, got shapes {b.shape} and {a.shape}",
                              hint="pass one result per item")
    if b.shape != a.shape:
        raise ForgetlessError(f"before has {b.size} items but after has {a.size}",
                              hint="evaluate both models on the same items, in the same order")
    if b.size == 0:
        raise ForgetlessError("no items to compare", hint="evaluate on at least one item")
    try:
        b, a = b.astype(np.float64), a.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise ForgetlessError(f"per-item results must be numbers or booleans ({err})") from None
    if not (np.isfinite(b).all() and np.isfinite(a).all()):
        raise ForgetlessError("per-item results contain NaN or infinity",
                              hint="drop or fix the items whose score could not be computed")
    return b, a


def is_binary(values: np.ndarray) -> bool:
    """True for a bool array or numbers that are all 0 or 1."""
    v = np.asarray(values)
    return v.dtype == np.bool_ or bool(np.isin(v, (0, 1)).all())


def paired_differences(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """d_i = before_i - after_i as float64, after validating the pair. Shape (n,)."""
    b, a = as_paired_arrays(before, after)
    return b - a


@dataclass(frozen=True)
class PairedCounts:
    """The paired 2x2 table of binary outcomes (see the module docstring)."""

    n: int
    both_correct: int
    lost: int  # right before, wrong after
    gained: int  # wrong before, right after
    both_wrong: int

    @property
    def discordant(self) -> int:
        """b + c: the only items that say anything about a change."""
        return self.lost + self.gained

    @property
    def drop(self) -> float:
        """acc_before - acc_after = (b - c) / n."""
        return (self.lost - self.gained) / self.n


def paired_counts(before: np.ndarray, after: np.ndarray) -> PairedCounts:
    """Count the paired 2x2 table: a = both right, b = lost, c = gained, d = both wrong."""
    b, a = as_paired_arrays(before, after)
    if not (is_binary(b) and is_binary(a)):
        raise ForgetlessError("paired_counts needs binary outcomes (booleans or 0/1)",
                              hint="use paired_bootstrap_ci or sign_flip_test for continuous scores")
    rb, ra = b.astype(bool), a.astype(bool)
    return PairedCounts(
        n=int(rb.size),
        both_correct=int(np.sum(rb & ra)),
        lost=int(np.sum(rb & ~ra)),
        gained=int(np.sum(~rb & ra)),
        both_wrong=int(np.sum(~rb & ~ra)),
    )


def mcnemar_exact(lost: int, gained: int) -> float:
    """Two-sided exact McNemar p-value for b = lost and c = gained discordant pairs.

    Under H0 (no change) each discordant pair is a loss with probability 1/2, so with m = b + c

        p = min(1, 2 * P(X <= min(b, c))),   X ~ Binomial(m, 1/2)

    and p = 1 when m = 0. This equals `scipy.stats.binomtest(b, m, 0.5).pvalue` (the binomial
    with p = 1/2 is symmetric, so "double the smaller tail" and "sum the less likely outcomes"
    agree) and the exact sign-flip test on binary outcomes.
    """
    for name, value in (("lost", lost), ("gained", gained)):
        if isinstance(value, (bool, np.bool_)) or int(value) != value or value < 0:
            raise ForgetlessError(f"{name} must be a non-negative integer count, got {value!r}")
    b, c = int(lost), int(gained)
    if b == c:  # includes b = c = 0; 2 * P(X <= m/2) >= 1 anyway
        return 1.0
    return float(min(1.0, 2.0 * sps.binom.cdf(min(b, c), b + c, 0.5)))


def sign_flip_test(before: np.ndarray, after: np.ndarray, *, rng: np.random.Generator | int,
                   n_resamples: int = 10_000) -> float:
    """Two-sided paired permutation (sign-flip) p-value for H0: d_i is symmetric about 0.

    Statistic T = sum_i d_i. Under H0 every sign pattern s in {-1, +1}^n is equally likely, so

        p = P_s( |sum_i s_i d_i| >= |T| ).

    Zero differences never change T, so only the m non-zero d_i are flipped. With m <= 16 all
    2^m patterns are enumerated (exact; `rng` unused). Otherwise `n_resamples` random patterns
    give the valid Monte Carlo estimate p = (1 + #{|T*| >= |T|}) / (1 + n_resamples)
    (Phipson & Smyth 2010). Ties use a relative tolerance of 1e-12 * sum|d| so that
    floating-point noise never decides. On binary outcomes the exact version equals
    `mcnemar_exact`. Swapping before and after negates T and gives the same p.
    """
    d = paired_differences(before, after)
    d = d[d != 0]
    m = d.size
    if m == 0:
        return 1.0
    observed = abs(float(np.sum(d)))
    tol = 1e-12 * float(np.sum(np.abs(d)))
    if m <= _EXACT_SIGN_FLIP_MAX:
        bits = (np.arange(2**m)[:, None] >> np.arange(m)) & 1  # (2^m, m), every sign pattern once
        flipped = np.abs((1 - 2 * bits) @ d)
        return float(np.mean(flipped >= observed - tol))
    if n_resamples < 1:
        raise ForgetlessError(f"n_resamples must be at least 1, got {n_resamples}")
    gen = as_generator(rng)
    hits = 0
    rows = max(1, _CHUNK_ELEMENTS // m)
    for start in range(0, n_resamples, rows):
        signs = 1.0 - 2.0 * gen.integers(0, 2, size=(min(rows, n_resamples - start), m))  # (r, m)
        hits += int(np.sum(np.abs(signs @ d) >= observed - tol))
    return (1 + hits) / (1 + n_resamples)


def bootstrap_drops(d: np.ndarray, *, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of mean(d): row r averages d over n item indices drawn with replacement.

    Indices are drawn as `rng.integers(0, n, size=(rows, n))` in chunks of at most ~4M elements,
    so memory stays bounded for large n. Returns shape (n_resamples,).
    """
    n = d.size
    rows = max(1, _CHUNK_ELEMENTS // n)
    out = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, rows):
        stop = min(n_resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))  # (r, n) resampled item indices
        out[start:stop] = d[idx].sum(axis=1) / n
    return out


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    """Central percentile interval from order statistics, symmetric by construction.

    With R sorted replicates and alpha = 1 - confidence, k = floor(R * alpha / 2):

        (low, high) = (sorted[k], sorted[R - 1 - k])

    Using paired order statistics (no interpolation) means negating every replicate gives exactly
    (-high, -low).
    """
    r = np.sort(replicates)
    k = min(int(math.floor(r.size * (1.0 - confidence) / 2.0)), r.size - 1)
    return float(r[k]), float(r[r.size - 1 - k])


def check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ForgetlessError(f"confidence must be between 0 and 1 (exclusive), got {confidence}",
                              hint="use e.g. confidence=0.95")


def paired_bootstrap_ci(before: np.ndarray, after: np.ndarray, *, rng: np.random.Generator | int,
                        n_resamples: int = 10_000, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval for drop = mean(before) - mean(after), resampling items.

    Items are resampled as pairs (d_i = before_i - after_i keeps each item's before and after
    together), the drop is recomputed per resample, and the central `confidence` interval of the
    replicates is returned (see `percentile_interval`). Works for binary outcomes and for
    continuous scores alike. If every d_i is the same value v the interval is (v, v).

    Swapping before and after with the same seed gives exactly (-high, -low).
    """
    check_confidence(confidence)
    if n_resamples < 1:
        raise ForgetlessError(f"n_resamples must be at least 1, got {n_resamples}")
    d = paired_differences(before, after)
    if np.all(d == d[0]):
        v = float(np.mean(d))
        return v, v
    return percentile_interval(bootstrap_drops(d, n_resamples=n_resamples, rng=as_generator(rng)),
                               confidence)


def _wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion: (p + z^2/2n -+ z sqrt(...)) / (1 + z^2/n)."""
    p = successes / n
    denom = 1.0 + z * z / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - half) / denom), min(1.0, (centre + half) / denom)


def paired_newcombe_ci(counts: PairedCounts, *, confidence: float = 0.95) -> tuple[float, float]:
    """Deterministic interval for drop = p1 - p2 of paired proportions (Newcombe 1998, method 10).

    p1 = (a + b) / n is accuracy before, p2 = (a + c) / n after; (l_k, u_k) are their Wilson
    score intervals and phi = A / sqrt((a+b)(c+d)(a+c)(b+d)) (0 if a margin is empty), where
    A = a d - b c, continuity-corrected to A - n/2 if A > n/2 and to 0 if 0 <= A <= n/2:

        low  = drop - sqrt((p1 - l1)^2 - 2 phi (p1 - l1)(u2 - p2) + (u2 - p2)^2)
        high = drop + sqrt((u1 - p1)^2 - 2 phi (u1 - p1)(p2 - l2) + (p2 - l2)^2)

    Unlike the Wald interval (b - c)/n +- z sqrt(b + c - (b - c)^2/n)/n it stays inside [-1, 1]
    and does not collapse to a point when there are no discordant pairs. A reference for the
    bootstrap; no random numbers. Matches Fagerland, Lydersen & Laake (2017), "Statistical
    Analysis of Contingency Tables", ch. 8 ("Newcombe square-and-add").
    """
    check_confidence(confidence)
    a, b, c, d, n = counts.both_correct, counts.lost, counts.gained, counts.both_wrong, counts.n
    z = float(sps.norm.ppf(0.5 + confidence / 2.0))
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = _wilson(a + b, n, z)
    l2, u2 = _wilson(a + c, n, z)
    margins = (a + b) * (c + d) * (a + c) * (b + d)  # exact integer product
    cross = a * d - b * c
    cross = cross - n / 2 if cross > n / 2 else min(cross, 0)  # Newcombe's continuity correction
    phi = cross / math.sqrt(margins) if margins > 0 else 0.0
    lower = (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2
    upper = (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2
    drop = counts.drop  # (b - c) / n, the same float summarize_drop reports
    return max(-1.0, drop - math.sqrt(max(lower, 0.0))), min(1.0, drop + math.sqrt(max(upper, 0.0)))
