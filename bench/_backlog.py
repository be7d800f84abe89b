"""Does the server keep up at the real cadence? Offered vs. recorded over time, a slope.

The fleet sends at its real 30 s cadence for a while; every few seconds the simulator's
count of messages sent and the server's count of accepted ones are read. The backlog
is their difference (what was sent and not yet recorded); its least-squares slope over
the hold is the growth per second: zero (within noise) when the server keeps up.
"""

from __future__ import annotations

import time
from typing import Any

SAMPLE_S = 2.0


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 for fewer than two points)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def hold(fleet: Any, servers: list[Any], seconds: float, period: float) -> dict[str, Any]:
    """Send at ``period`` for ``seconds`` (after one period to settle); the backlog curve."""
    fleet.set_period(period)
    time.sleep(min(period, seconds / 3))

    def accepted() -> float:
        return float(sum(s.stats()["accepted"] for s in servers))

    sent0, acc0, t0 = fleet.counts()[0], accepted(), time.monotonic()
    ts: list[float] = []
    backlog: list[float] = []
    sent = acc = 0.0
    while time.monotonic() - t0 < seconds:
        time.sleep(SAMPLE_S)
        sent, acc = fleet.counts()[0] - sent0, accepted() - acc0
        ts.append(time.monotonic() - t0)
        backlog.append(sent - acc)
    elapsed = time.monotonic() - t0
    growth = slope(ts, backlog)
    return {
        "seconds": elapsed,
        "offered": sent / elapsed,
        "accepted": acc / elapsed,
        "backlog_end": backlog[-1] if backlog else 0.0,
        "backlog_max": max(backlog, default=0.0),
        "growth_per_s": growth,
    }
