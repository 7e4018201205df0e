"""The time budget's arithmetic (`forgetless.train.budget`), against brute force."""

from __future__ import annotations

import itertools
import time

import pytest

from forgetless.train.budget import ROUND_TO, seconds_per_batch, steps_within


def brute_force(seconds: float, per_step: float, limit: int) -> int:
    fit = max([n for n in range(limit + 1) if n * per_step <= seconds])
    if fit == limit:  # every planned step fits: all of them
        return limit
    if fit >= 2 * ROUND_TO:  # cut by time: rounded down
        fit = max(n for n in range(fit + 1) if n % ROUND_TO == 0)
    return max(1, fit)


@pytest.mark.parametrize("seconds,per_step,limit", itertools.product([0.5, 3, 47.9, 48, 100, 480, 1e4],
                                                                     [0.01, 1.6, 2.4, 7], [1, 19, 20, 60, 316]))
def test_steps_within_matches_brute_force(seconds, per_step, limit):
    assert steps_within(seconds, per_step, limit) == brute_force(seconds, per_step, limit)


def test_steps_within_examples():
    assert steps_within(480, 2.4, 316) == 200  # the default run on a 2-core AMD EPYC without AMX
    assert steps_within(480, 1.9, 316) == 250  # 252 fit: rounded down, so timing noise moves nothing
    assert steps_within(480, 1.0, 316) == 316  # the data's passes fit: all of them
    assert steps_within(1, 5.0, 316) == 1  # never zero


def test_seconds_per_batch_leaves_out_the_warm_up():
    def step(pause: float) -> None:
        time.sleep(pause)

    mean = seconds_per_batch(step, [0.5, 0.02, 0.02, 0.02])
    assert 0.015 < mean < 0.2  # with the warm-up it would be at least 0.14... and here it cannot reach 0.5/3
    with pytest.raises(ValueError):
        seconds_per_batch(step, [0.01])
