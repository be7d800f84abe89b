"""Thread-safe ingest counters and a logger that says each thing at most once a minute.

paho's network thread, the ingest worker and the API's threads all touch the counters,
so every update takes one lock. The rate-limited logger keeps a flood of bad messages
from flooding the log; it never logs payloads (they may carry PII), only what callers
pass: an outlet id, a reason, a size.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class StatsSnapshot:
    """A consistent copy of the counters at one moment."""

    received: int
    accepted: int
    rejected: dict[str, int]
    noted: dict[str, int]
    rebirths_requested: int
    rebirths_throttled: int
    batches_committed: int
    db_errors: int
    queue_depth: int
    broker_connected: bool


@dataclass(slots=True)
class IngestStats:
    """Counters of the ingest. ``rejected`` holds messages that changed nothing, by reason;
    ``noted`` holds accepted messages worth counting (``seq_gap``, ``transactions_received``).
    """

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _received: int = 0
    _accepted: int = 0
    _rejected: Counter[str] = field(default_factory=Counter)
    _noted: Counter[str] = field(default_factory=Counter)
    _rebirths_requested: int = 0
    _rebirths_throttled: int = 0
    _batches_committed: int = 0
    _db_errors: int = 0
    _broker_connected: bool = False

    def received(self, count: int = 1) -> None:
        """Messages arrived from the broker."""
        with self._lock:
            self._received += count

    def accepted(self, count: int = 1) -> None:
        """Messages applied to presence."""
        with self._lock:
            self._accepted += count

    def rejected(self, reason: str) -> None:
        """A message was dropped or ignored for ``reason``."""
        with self._lock:
            self._rejected[reason] += 1

    def noted(self, reason: str) -> None:
        """An accepted message had something worth counting."""
        with self._lock:
            self._noted[reason] += 1

    def rebirth(self, *, sent: bool) -> None:
        """A rebirth was wanted; ``sent`` is False when the throttle held it back."""
        with self._lock:
            if sent:
                self._rebirths_requested += 1
            else:
                self._rebirths_throttled += 1

    def batch_committed(self) -> None:
        """One batch reached the database."""
        with self._lock:
            self._batches_committed += 1

    def db_error(self) -> None:
        """A batch could not be written (it is retried with the next one)."""
        with self._lock:
            self._db_errors += 1

    def set_broker_connected(self, connected: bool) -> None:
        """Record whether the ingest is connected and subscribed."""
        with self._lock:
            self._broker_connected = connected

    @property
    def broker_connected(self) -> bool:
        """Whether the ingest is connected and subscribed now."""
        with self._lock:
            return self._broker_connected

    def snapshot(self, *, queue_depth: int = 0) -> StatsSnapshot:
        """Copy every counter under the lock."""
        with self._lock:
            return StatsSnapshot(
                received=self._received,
                accepted=self._accepted,
                rejected=dict(self._rejected),
                noted=dict(self._noted),
                rebirths_requested=self._rebirths_requested,
                rebirths_throttled=self._rebirths_throttled,
                batches_committed=self._batches_committed,
                db_errors=self._db_errors,
                queue_depth=queue_depth,
                broker_connected=self._broker_connected,
            )


class RateLimitedLog:
    """Log each ``key`` at most once per ``interval_s``, with the count held back since."""

    def __init__(self, logger: logging.Logger, *, interval_s: float = 60.0) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def _due(self, key: str) -> int | None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval_s:
                self._suppressed[key] += 1
                return None
            self._last[key] = now
            return self._suppressed.pop(key, 0)

    def warning(self, key: str, msg: str, *args: object) -> None:
        """``logger.warning`` unless ``key`` was logged within the interval."""
        suppressed = self._due(key)
        if suppressed is not None:
            fmt = msg + " (%d more since last logged)"
            self._logger.warning(fmt, *args, suppressed)

    def exception(self, key: str, msg: str, *args: object, exc: BaseException) -> None:
        """Log ``exc`` with its traceback unless ``key`` was logged recently."""
        suppressed = self._due(key)
        if suppressed is not None:
            fmt = msg + " (%d more since last logged)"
            self._logger.error(fmt, *args, suppressed, exc_info=exc)
