"""Cooperative pacing for long passes that share a process with latency-bound threads.

The fleet server runs the ingest, the delivery worker and the web server as threads of
one process, under one GIL. A background pass over the whole fleet (the alert engine
reads 10,000 outlets every 5 s) holds the interpreter for hundreds of milliseconds; a
thread that needs it dozens of times per transaction (each database call, each socket
operation gives it up and takes it back) then waits a switch interval at every turn,
and a clerk's transaction that arrives during the pass stalls for about its length
(docs/performance.md, "Clerk → upstream"). Lowering the switch interval did not help
there; resting between short slices of the pass did.

``Pacer()`` is called once per unit of work (a row); after ``work_s`` of wall time it
sleeps ``rest_s``, which frees the GIL for the other threads. The pass takes longer
(about ``1 + rest_s / work_s`` times) and the rest of the process keeps its pace.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

__all__ = ["Pacer", "no_pacing"]

_CHECK_EVERY: Final = 32  # units between clock reads: a clock read per row costs more


class Pacer:
    """Call per unit of work; rests ``rest_s`` after every ``work_s`` of work."""

    def __init__(
        self,
        *,
        work_s: float = 0.01,
        rest_s: float = 0.01,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._work_s = work_s
        self._rest_s = rest_s
        self._clock = clock
        self._sleep = sleep
        self._count = 0
        self._since = clock()
        self.rests = 0

    def __call__(self) -> None:
        self._count += 1
        if self._count % _CHECK_EVERY:
            return
        if self._clock() - self._since >= self._work_s:
            self._sleep(self._rest_s)
            self.rests += 1
            self._since = self._clock()


def no_pacing() -> None:
    """A pacer that never rests (tests, one-off reads)."""
