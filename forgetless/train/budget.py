"""A training budget in seconds: the optimizer steps that fit, timed on this machine before training.

Why: a step count sized on one CPU overruns on another. 260 steps of the default run took 10.5 min
on an Intel Xeon and 13.3 min on an AMD EPYC, both 2 cores without AMX. Timing a few real steps
first, then fixing `max_steps`, keeps the learning-rate schedule whole; a deadline that stopped
training part-way would leave it undecayed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

ROUND_TO = 10  # step counts from 2 * ROUND_TO up are rounded down to a multiple of it


def seconds_per_batch(step: Callable[[Any], None], batches: Sequence[Any]) -> float:
    """Mean wall time of `step` over batches[1:]; batches[0] only warms up (allocations, kernel choice)."""
    if len(batches) < 2:
        raise ValueError("timing needs a warm-up batch and at least one timed batch")
    step(batches[0])
    clock = time.perf_counter()
    for batch in batches[1:]:
        step(batch)
    return (time.perf_counter() - clock) / (len(batches) - 1)


def steps_within(seconds: float, per_step: float, limit: int) -> int:
    """The most optimizer steps that fit in `seconds` at `per_step` each, at most `limit`, at least 1.

    A count cut by time is rounded down to a multiple of ROUND_TO from 2 * ROUND_TO up, so that runs
    on one machine settle on the same count despite a few percent of timing noise.
    """
    fit = math.floor(seconds / per_step) if per_step > 0 else limit
    if fit >= limit:
        return limit
    if fit >= 2 * ROUND_TO:
        fit -= fit % ROUND_TO
    return max(1, fit)
