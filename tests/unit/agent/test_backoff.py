"""`agent.backoff.Backoff`: full jitter within [0, min(cap, base * 2**attempt)], capped, reset."""

from __future__ import annotations

import itertools
import random

import pytest

from agent.backoff import Backoff


def test_delays_stay_within_the_full_jitter_window() -> None:
    backoff = Backoff(base=0.5, cap=30.0, rng=random.Random(1))
    for attempt in range(12):
        ceiling = min(30.0, 0.5 * 2**attempt)
        assert backoff.ceiling() == ceiling
        assert 0.0 <= backoff.next_delay() <= ceiling
        assert backoff.attempt == attempt + 1


def test_the_cap_holds_after_many_attempts() -> None:
    backoff = Backoff(base=0.5, cap=30.0, rng=random.Random(2))
    delays = list(itertools.islice(backoff, 5000))
    assert max(delays) <= 30.0
    assert backoff.ceiling() == 30.0
    assert max(delays[-100:]) > 15.0  # jitter still spreads over the whole capped window


def test_jitter_is_full_not_equal() -> None:
    """Full jitter draws from 0 up: small delays happen at high attempts too."""
    backoff = Backoff(base=1.0, cap=8.0, rng=random.Random(3))
    backoff.attempt = 10
    delays = [backoff.next_delay() for _ in range(200)]
    assert min(delays) < 1.0
    assert max(delays) <= 8.0


def test_reset_starts_small_again() -> None:
    backoff = Backoff(base=0.5, cap=30.0, rng=random.Random(4))
    for _ in range(8):
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_delay() <= 0.5


def test_seeded_rng_is_deterministic() -> None:
    first = list(itertools.islice(Backoff(rng=random.Random(42)), 20))
    second = list(itertools.islice(Backoff(rng=random.Random(42)), 20))
    assert first == second


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_bad_parameters_are_refused(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="base"):
        Backoff(base=base, cap=cap)


async def test_async_iteration_sleeps_between_attempts_only() -> None:
    backoff = Backoff(base=0.001, cap=0.002, rng=random.Random(5))
    attempts = []
    async for attempt in backoff:
        attempts.append(attempt)
        if attempt == 3:
            break
    assert attempts == [0, 1, 2, 3]
    assert backoff.attempt == 3  # one delay before each attempt but the first


async def test_sleep_returns_the_delay_it_slept() -> None:
    backoff = Backoff(base=0.001, cap=0.001, rng=random.Random(6))
    delay = await backoff.sleep()
    assert 0.0 <= delay <= 0.001
