"""Per-outlet token buckets for the ingest, so one chatty agent cannot starve the rest.

paho's network thread asks ``allow(topic)`` for every message before it is queued.
Every uplink kind is limited. Presence (births and deaths) has a bucket of its own per
outlet: a flood of telemetry or transactions cannot spend the tokens a birth needs, and
a reconnect loop cannot flood presence. Its burst covers a birth storm after a broker
restart (the reconnect, the server's state coming back online and a requested rebirth:
a few births within seconds); its refill is slow, as a healthy agent is born rarely.
What is refused is counted per outlet; ``top()`` shows the worst offenders.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

_PRESENCE_KINDS = frozenset({"birth", "death"})


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class OutletRateLimiter:
    """Per outlet: ``rate_per_s`` messages on average with bursts up to ``burst``, and
    separately ``presence_rate_per_s`` births and deaths with bursts up to
    ``presence_burst``."""

    def __init__(
        self,
        *,
        rate_per_s: float,
        burst: int,
        presence_rate_per_s: float = 0.5,
        presence_burst: int = 30,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = {
            False: (rate_per_s, float(burst)),
            True: (presence_rate_per_s, float(presence_burst)),
        }
        self._clock = clock
        self._buckets: dict[tuple[str, bool], _Bucket] = {}
        self._excess: Counter[str] = Counter()
        self._lock = threading.Lock()

    def allow(self, outlet_id: str, *, kind: str = "") -> bool:
        """Take a token for ``outlet_id``'s ``kind``; False (and counted) when empty."""
        presence = kind in _PRESENCE_KINDS
        rate, burst = self._limits[presence]
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get((outlet_id, presence))
            if bucket is None:
                bucket = self._buckets[outlet_id, presence] = _Bucket(burst, now)
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.stamp) * rate)
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
