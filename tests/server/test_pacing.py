"""``fleet_server.pacing.Pacer``: a long pass rests after each slice of work.

The clock and the sleep are the pacer's parameters, so the test drives them: what it
checks is the rule (rest ``rest_s`` once ``work_s`` of work has passed, counted from
the last rest), not a timing of this machine. What the pacing does for a clerk's
transaction is measured by bench/outbox_drain.py (docs/performance.md)."""

from __future__ import annotations

from fleet_server.pacing import Pacer


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_rests_after_each_slice_of_work_and_not_before() -> None:
    time = FakeTime()
    pace = Pacer(work_s=0.01, rest_s=0.02, clock=time.clock, sleep=time.sleep)
    for _ in range(1000):  # 1 ms of work per row: 1 s in all
        time.now += 0.001
        pace()
    # The clock is read every 32 rows, so a slice is 32 rows (32 ms) here; 1000 rows make
    # 31 slices, each followed by one 20 ms rest.
    assert time.slept == [0.02] * 31
    assert pace.rests == 31


def test_quick_work_never_rests() -> None:
    time = FakeTime()
    pace = Pacer(work_s=0.01, rest_s=0.01, clock=time.clock, sleep=time.sleep)
    for _ in range(10_000):  # rows that take no time at all
        pace()
    assert time.slept == []
