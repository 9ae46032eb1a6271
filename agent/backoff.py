"""Exponential backoff with full jitter, capped, for reconnect loops.

`delay = uniform(0, min(cap, base * 2 ** attempt))` (AWS "full jitter"): a
fleet that lost its hub spreads its reconnects over the whole window instead
of arriving in waves.

    backoff = Backoff(base=0.5, cap=30.0)
    async for attempt in backoff:      # sleeps before every attempt but the first
        try:
            await connect()
        except OSError:
            continue
        backoff.reset()                # success: the next failure starts small again
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator, Iterator

__all__ = ["Backoff"]

_MAX_EXPONENT = 64
"""Past this the ceiling is the cap anyway; keeps `2 ** attempt` finite."""


class Backoff:
    """Delays for successive retries; `reset()` after a success."""

    def __init__(self, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None) -> None:
        if base <= 0 or cap < base:
            raise ValueError(f"backoff needs 0 < base <= cap (got base={base}, cap={cap})")
        self.base = base
        self.cap = cap
        self.attempt = 0
        """Failures since the last reset: the exponent of the next delay."""
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        """The upper bound of the next delay."""
        return min(self.cap, math.ldexp(self.base, min(self.attempt, _MAX_EXPONENT)))

    def next_delay(self) -> float:
        """A delay drawn uniformly from [0, ceiling], then one more attempt counted."""
        delay = self._rng.uniform(0.0, self.ceiling())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0

    async def sleep(self) -> float:
        """Sleep for the next delay and return it."""
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay

    def __iter__(self) -> Iterator[float]:
        """Endless delays (for callers that sleep by themselves)."""
        while True:
            yield self.next_delay()

    async def __aiter__(self) -> AsyncIterator[int]:
        """Endless attempt numbers (0, 1, ...), sleeping a jittered delay before each but the first."""
        number = 0
        while True:
            if number:
                await self.sleep()
            yield number
            number += 1
