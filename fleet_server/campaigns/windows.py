"""Maintenance windows: when an outlet may install (closed, or its quiet window when it
never closes), from the same hours the config holds read (``health.hours``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from fleet_server.health.hours import DAYS, may_take_devices, zone_of

# An outlet whose window never ends within a week (no hours known) gets this long.
_OPEN_ENDED: Final = timedelta(hours=12)


def _edges(hours: Any, day: datetime) -> list[datetime]:
    """Moments of ``day`` (local midnight) when a window may end: span starts, and the
    end of the quiet window."""
    if not isinstance(hours, dict):
        return []
    minutes: list[int] = []
    spans = hours.get(DAYS[day.weekday()]) or []
    for text in spans if isinstance(spans, list | tuple) else [spans]:
        start, sep, _ = str(text).partition("-")
        hh, colon, mm = start.strip().partition(":")
        if sep and colon and hh.isdigit() and mm.isdigit():
            minutes.append(int(hh) * 60 + int(mm))
    quiet = hours.get("quiet_window")
    if isinstance(quiet, str) and "-" in quiet:
        hh, colon, mm = quiet.split("-", 1)[1].strip().partition(":")
        if colon and hh.isdigit() and mm.isdigit():
            minutes.append(int(hh) * 60 + int(mm))
    return [day + timedelta(minutes=m) for m in minutes]


def window(hours: Any, *, now: datetime, default_zone: str) -> datetime | None:
    """None when the outlet is outside its window at ``now``; else when it closes (UTC)."""
    local = now.astimezone(zone_of(hours, default_zone))
    if not may_take_devices(hours, local):
        return None
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    moments = sorted(
        m for offset in range(8) for m in _edges(hours, midnight + timedelta(days=offset))
        if m > local
    )  # fmt: skip
    for moment in moments:
        if not may_take_devices(hours, moment):
            return moment.astimezone(UTC)
    return (now + _OPEN_ENDED).astimezone(UTC)
