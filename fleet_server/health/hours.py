"""Opening hours of an outlet, in the profile's shape or the fleet config's.

Two shapes are read: the outlet profile's ``"24h"`` or ``{"mon": ["08:30-12:00"], …}``,
and the desired config's ``opening_hours`` (``govedge_wire.config.OpeningHours``): the
same day lists plus ``always_open`` (wins over the days), ``time_zone`` and
``quiet_window`` (``"23:00-05:00"`` may cross midnight). A span may end at ``24:00``.
``None`` (no hours known) counts as always open, so an outlet nobody described still
raises alerts. Malformed entries are ignored (treated as closed for that span).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_MINUTES = 24 * 60
# How far ahead ``next_closed`` looks: one week covers every weekly pattern.
_LOOKAHEAD_DAYS = 8


def is_24h(hours: Any) -> bool:
    """Whether ``hours`` says the outlet never closes."""
    if hours is None:
        return True
    if isinstance(hours, str):
        return hours.strip().lower() in ("24h", "24/7")
    return isinstance(hours, dict) and hours.get("always_open") is True


def _minutes(text: str, *, end: bool) -> int | None:
    """``"HH:MM"`` as minutes after midnight; ``"24:00"`` only as an end."""
    hh, sep, mm = text.strip().partition(":")
    if not sep or not hh.isdigit() or not mm.isdigit() or len(mm) != 2:
        return None
    value = int(hh) * 60 + int(mm)
    if int(mm) >= 60 or value > _DAY_MINUTES or (value == _DAY_MINUTES and not end):
        return None
    return value


def _span(text: str) -> tuple[int, int] | None:
    """A span as (start, end) minutes; None when malformed."""
    start_text, sep, end_text = text.partition("-")
    if not sep:
        return None
    start, end = _minutes(start_text, end=False), _minutes(end_text, end=True)
    if start is None or end is None:
        return None
    return start, end


def is_span(text: str) -> bool:
    """Whether ``text`` is one well-formed span ``HH:MM-HH:MM`` that ends after it starts."""
    span = _span(text)
    return span is not None and span[0] < span[1]


def _minute_of(local: datetime) -> float:
    return local.hour * 60 + local.minute + local.second / 60 + local.microsecond / 60e6


def _day_spans(hours: dict[str, Any], day: int) -> list[tuple[int, int]]:
    spans = hours.get(DAYS[day]) or []
    found = []
    for text in spans if isinstance(spans, list | tuple) else [spans]:
        span = _span(str(text))
        if span is not None and span[0] < span[1]:
            found.append(span)
    return found


def is_open(hours: Any, local: datetime) -> bool:
    """Whether an outlet with ``hours`` is open at the local time ``local``."""
    if is_24h(hours):
        return True
    if not isinstance(hours, dict):
        return False
    now = _minute_of(local)
    return any(start <= now < end for start, end in _day_spans(hours, local.weekday()))


def in_quiet_window(hours: Any, local: datetime) -> bool:
    """Whether ``local`` falls in the hours' ``quiet_window`` (which may cross midnight)."""
    if not isinstance(hours, dict) or not isinstance(hours.get("quiet_window"), str):
        return False
    span = _span(hours["quiet_window"])
    if span is None:
        return False
    start, end = span
    now = _minute_of(local)
    if start < end:
        return start <= now < end
    return now >= start or now < end  # crosses midnight (start == end: all day)


def may_take_devices(hours: Any, local: datetime) -> bool:
    """Whether a change that takes devices away from citizens may apply now: the outlet
    is closed, or it never closes and ``local`` is in its quiet window."""
    if is_24h(hours):
        return in_quiet_window(hours, local)
    return not is_open(hours, local)


def zone_of(hours: Any, default: str) -> ZoneInfo:
    """The hours' own ``time_zone`` when it names a valid zone, else ``default``."""
    if isinstance(hours, dict) and isinstance(hours.get("time_zone"), str):
        try:
            return ZoneInfo(hours["time_zone"])
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    return ZoneInfo(default)


def next_closed(hours: Any, local: datetime) -> datetime | None:
    """The first local time from ``local`` on when ``may_take_devices`` holds, or None
    when it never does within a week (an outlet always open without a quiet window)."""
    if may_take_devices(hours, local):
        return local
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    candidates: list[datetime] = []
    for offset in range(_LOOKAHEAD_DAYS):
        day = midnight + timedelta(days=offset)
        edges: list[int] = []
        if isinstance(hours, dict):
            edges += [end for _, end in _day_spans(hours, day.weekday())]
            window = hours.get("quiet_window")
            quiet = _span(window) if isinstance(window, str) else None
            if quiet is not None:
                edges.append(quiet[0])
        # Wall-clock arithmetic in the local zone, as the hours are written.
        candidates += [day + timedelta(minutes=edge) for edge in edges]
    for moment in sorted(c for c in candidates if c > local):
        if may_take_devices(hours, moment):
            return moment
    return None


def describe(hours: Any) -> str:
    """A short human text of the hours, for the map and the outlet page."""
    if is_24h(hours):
        return "24h"
    if not isinstance(hours, dict):
        return "?"
    return "; ".join(f"{day} {','.join(map(str, hours[day]))}" for day in DAYS if hours.get(day))
