"""Opening hours in the profile's shape and the fleet config's wire shape (OpeningHours)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from fleet_server.health.hours import (
    describe,
    in_quiet_window,
    is_24h,
    is_open,
    may_take_devices,
    next_closed,
    zone_of,
)
from govedge_wire.config import OpeningHours

SHANGHAI = ZoneInfo("Asia/Shanghai")
# 2026-12-07 is a Monday.
MONDAY = datetime(2026, 12, 7, tzinfo=SHANGHAI)


def _at(day_offset: int, hh: int, mm: int = 0) -> datetime:
    return MONDAY.replace(day=7 + day_offset, hour=hh, minute=mm)


def _wire(**fields: object) -> dict[str, object]:
    """Hours as the fleet config sends them (validated by the wire model)."""
    return OpeningHours.model_validate(fields).model_dump(mode="json", exclude_none=True)


def test_profile_shape_still_reads() -> None:
    hours = {"mon": ["08:30-12:00", "13:30-17:30"]}
    assert is_open(hours, _at(0, 9))
    assert not is_open(hours, _at(0, 12, 30))
    assert not is_open(hours, _at(1, 9))  # Tuesday absent: closed
    assert is_24h("24h")
    assert is_24h(None)
    assert describe(hours) == "mon 08:30-12:00,13:30-17:30"


def test_a_span_may_end_at_midnight() -> None:
    hours = _wire(mon=["18:00-24:00"], tue=["00:00-02:00"])
    assert is_open(hours, _at(0, 23, 59))
    assert is_open(hours, _at(1, 1))
    assert not is_open(hours, _at(1, 2))
    assert not is_open(hours, _at(0, 17, 59))


def test_always_open_wins_over_the_days_and_only_the_quiet_window_takes_devices() -> None:
    hours = _wire(always_open=True, mon=["09:00-10:00"], quiet_window="23:00-05:00")
    assert is_24h(hours)
    assert is_open(hours, _at(0, 12))  # outside Monday's span, still open
    # The quiet window crosses midnight.
    assert in_quiet_window(hours, _at(0, 23, 30))
    assert in_quiet_window(hours, _at(1, 4, 59))
    assert not in_quiet_window(hours, _at(1, 5))
    assert not may_take_devices(hours, _at(0, 12))
    assert may_take_devices(hours, _at(1, 1))
    assert next_closed(hours, _at(0, 12)) == _at(0, 23)


def test_next_closed_is_the_end_of_the_current_span() -> None:
    hours = _wire(mon=["08:30-12:00", "13:30-17:30"], tue=["08:30-17:30"])
    assert next_closed(hours, _at(0, 9)) == _at(0, 12)
    assert next_closed(hours, _at(0, 12, 30)) == _at(0, 12, 30)  # closed now
    # A span ending at 24:00 followed by one starting at 00:00 is not a closing.
    night = _wire(mon=["20:00-24:00"], tue=["00:00-06:00"])
    assert next_closed(night, _at(0, 21)) == _at(1, 6)


def test_an_outlet_that_never_closes_without_a_quiet_window_never_takes_devices() -> None:
    assert next_closed(_wire(always_open=True), _at(0, 3)) is None
    assert next_closed(None, _at(0, 3)) is None  # nothing known: as always open


def test_the_hours_own_time_zone_is_used() -> None:
    assert zone_of(_wire(time_zone="Asia/Urumqi"), "Asia/Shanghai") == ZoneInfo("Asia/Urumqi")
    assert zone_of({"time_zone": "Not/AZone"}, "Asia/Shanghai") == SHANGHAI
    assert zone_of(None, "Asia/Shanghai") == SHANGHAI
