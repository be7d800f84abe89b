"""Reconnect backoff: full jitter within [0, min(cap, base * 2**n)], never above cap."""

from __future__ import annotations

import pytest

from edge_agent.backoff import backoff_ceiling, full_jitter_delay, jittered


@pytest.mark.parametrize(("base", "cap"), [(1.0, 60.0), (0.1, 2.0), (5.0, 5.0)])
def test_full_jitter_bounds(base: float, cap: float) -> None:
    for attempt in range(80):
        ceiling = min(cap, base * 2**attempt)
        assert backoff_ceiling(attempt, base=base, cap=cap) == ceiling
        samples = [full_jitter_delay(attempt, base=base, cap=cap) for _ in range(200)]
        assert all(0.0 <= s <= ceiling <= cap for s in samples)
    # Real randomness spreads over the window rather than clustering at one end.
    wide = [full_jitter_delay(10, base=base, cap=cap) for _ in range(2000)]
    assert min(wide) < 0.2 * cap
    assert max(wide) > 0.8 * cap


def test_huge_attempt_does_not_overflow() -> None:
    assert backoff_ceiling(10_000, base=1.0, cap=60.0) == 60.0
    assert 0 <= full_jitter_delay(10**9, base=1.0, cap=60.0) <= 60.0


def test_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt"):
        backoff_ceiling(-1, base=1.0, cap=60.0)


def test_timer_jitter_is_ten_percent() -> None:
    samples = [jittered(30.0) for _ in range(2000)]
    assert all(27.0 <= s <= 33.0 for s in samples)
    assert min(samples) < 28.0
    assert max(samples) > 32.0
