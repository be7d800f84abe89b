"""A circuit breaker per upstream target, so one dead platform does not hold up others.

Closed: requests flow; ``threshold`` consecutive failures open it. Open: nothing is
sent until ``cooldown_s`` passed; then it is half-open and lets exactly one probe
through. The probe's success closes it; its failure opens it again for another
cool-down. State is in memory (per process): after a restart a dead target costs at
most ``threshold`` more failed attempts before it opens again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["BreakerState", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]


@dataclass(slots=True)
class _Slot:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


class CircuitBreaker:
    """Thread-safe: the worker asks ``allow`` before a delivery and reports its result."""

    def __init__(
        self, *, threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._threshold = threshold
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._slot = _Slot()

    @property
    def state(self) -> BreakerState:
        """Closed, open, or half-open (cool-down over, probe allowed or running)."""
        with self._lock:
            return self._state()

    def _state(self) -> BreakerState:
        slot = self._slot
        if slot.opened_at is None:
            return "closed"
        if self._clock() - slot.opened_at >= self._cooldown_s:
            return "half_open"
        return "open"

    def blocked(self) -> bool:
        """Would ``allow`` refuse now? (Open, or half-open with its probe out.) Asks only:
        unlike ``allow`` it never takes the probe."""
        with self._lock:
            state = self._state()
            return state == "open" or (state == "half_open" and self._slot.probing)

    def allow(self) -> bool:
        """May one delivery go out now? In half-open state only one (the probe) may."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return True
            if state == "half_open" and not self._slot.probing:
                self._slot.probing = True
                return True
            return False

    def success(self) -> None:
        """A delivery reached the upstream: close."""
        with self._lock:
            self._slot = _Slot()

    def failure(self) -> None:
        """A delivery failed transiently (5xx, timeout, refused): count, maybe open."""
        with self._lock:
            slot = self._slot
            slot.failures += 1
            if slot.probing or slot.failures >= self._threshold:
                slot.opened_at = self._clock()
            slot.probing = False

    def release(self) -> None:
        """A permitted delivery ended without telling anything about the upstream."""
        with self._lock:
            self._slot.probing = False
