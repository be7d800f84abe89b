"""A token bucket with an injectable clock and sleep, so tests count instead of timing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Final

# Float slack: a refill that lands a hair under one token must not spin on tiny sleeps.
_EPSILON: Final = 1e-6


class TokenBucket:
    """``rate_per_s`` tokens per second, at most ``burst`` saved up; one token per message.

    A 72-hour backlog then drains at a steady rate instead of flooding the broker (and
    every outlet of a province doing the same after a regional outage).
    """

    def __init__(
        self,
        rate_per_s: float,
        *,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._stamp = clock()

    def set_rate(self, rate_per_s: float) -> None:
        """Change the rate from now on (a fleet config); the saved tokens are kept."""
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be > 0")
        self._refill()
        self._rate = rate_per_s

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    def has_token(self) -> bool:
        """Whether ``acquire`` would return now without sleeping."""
        self._refill()
        return self._tokens >= 1.0 - _EPSILON

    async def acquire(self) -> None:
        """Take one token, sleeping (each sleep at most ``1 / rate`` s) until there is one."""
        while True:
            self._refill()
            if self._tokens >= 1.0 - _EPSILON:
                self._tokens = max(0.0, self._tokens - 1.0)
                return
            await self._sleep((1.0 - self._tokens) / self._rate)
