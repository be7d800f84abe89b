"""The per-outlet limiter: every uplink kind counted, presence in a bucket of its own."""

from __future__ import annotations

from fleet_server.ingest.ratelimit import OutletRateLimiter


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _allowed(limiter: OutletRateLimiter, outlet: str, kind: str, count: int) -> int:
    return sum(limiter.allow_topic(f"govedge/v1/{outlet}/up/{kind}") for _ in range(count))


def test_every_uplink_kind_is_limited_per_outlet() -> None:
    limiter = OutletRateLimiter(rate_per_s=20, burst=200, clock=_Clock())
    for kind in ("telemetry", "event", "tx", "cmdres"):
        assert _allowed(limiter, f"o-{kind}", kind, 1000) == 200, kind
    # Kinds share the outlet's bucket: a flood of transactions leaves no telemetry room.
    assert _allowed(limiter, "o-tx", "telemetry", 1) == 0
    assert limiter.top(1) == [("o-tx", 801)]


def test_presence_has_its_own_bucket_with_a_burst_for_a_birth_storm() -> None:
    clock = _Clock()
    limiter = OutletRateLimiter(
        rate_per_s=20, burst=200, presence_rate_per_s=0.5, presence_burst=30, clock=clock
    )
    # A telemetry flood does not take the tokens the outlet's births need.
    assert _allowed(limiter, "o-1", "telemetry", 500) == 200
    assert _allowed(limiter, "o-1", "birth", 3) == 3
    # A broker restart: reconnect, server state online, a requested rebirth, and more.
    assert _allowed(limiter, "o-1", "birth", 27) == 27
    # A reconnect loop beyond the burst is refused, births and deaths alike.
    assert _allowed(limiter, "o-1", "death", 10) == 0
    assert _allowed(limiter, "o-1", "birth", 10) == 0
    clock.now += 10.0  # 0.5/s refills five
    assert _allowed(limiter, "o-1", "birth", 10) == 5
    # Another outlet is untouched.
    assert _allowed(limiter, "o-2", "birth", 30) == 30
