"""Per-outlet token buckets for the ingest, so one chatty agent cannot starve the rest.

paho's network thread asks ``allow(topic)`` for every message before it is queued.
Births and deaths are never limited: presence must stay true even for a noisy outlet.
What is refused is counted per outlet; ``top()`` shows the worst offenders.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

# Presence is never limited; neither are transactions and command results: the agent's
# outbox already paces them, and a dropped one would wait out the agent's ack timeout.
_EXEMPT_KINDS = frozenset({"birth", "death", "tx", "cmdres"})


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class OutletRateLimiter:
    """``rate_per_s`` messages per outlet on average, bursts up to ``burst``."""

    def __init__(
        self,
        *,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._excess: Counter[str] = Counter()
        self._lock = threading.Lock()

    def allow(self, outlet_id: str, *, kind: str = "") -> bool:
        """Take a token for ``outlet_id``; False (and counted) when its bucket is empty."""
        if kind in _EXEMPT_KINDS:
            return True
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(outlet_id)
            if bucket is None:
                bucket = self._buckets[outlet_id] = _Bucket(self._burst, now)
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.stamp) * self._rate)
            bucket.stamp = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return True
            self._excess[outlet_id] += 1
            return False

    def allow_topic(self, topic: str) -> bool:
        """``allow`` for a ``govedge/v1/{outlet}/up/{kind}`` topic (others pass)."""
        parts = topic.split("/")
        if len(parts) != 5:
            return True
        return self.allow(parts[2], kind=parts[4])

    @property
    def total_excess(self) -> int:
        """Messages refused since start, all outlets."""
        with self._lock:
            return sum(self._excess.values())

    def top(self, limit: int = 50) -> list[tuple[str, int]]:
        """The outlets with the most refused messages, most first."""
        with self._lock:
            return self._excess.most_common(limit)
