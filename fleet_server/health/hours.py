"""Opening hours of an outlet: ``"24h"``, or ``{"mon": ["08:30-12:00", ...], ...}``.

``None`` (no hours known) counts as always open, so an outlet nobody described still
raises alerts. Malformed entries are ignored (treated as closed for that span).
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def is_24h(hours: Any) -> bool:
    """Whether ``hours`` says the outlet never closes."""
    return hours is None or (isinstance(hours, str) and hours.strip().lower() in ("24h", "24/7"))


def _span(text: str) -> tuple[time, time] | None:
    try:
        start, end = text.split("-", 1)
        return time.fromisoformat(start.strip()), time.fromisoformat(end.strip())
    except ValueError:
        return None


def is_open(hours: Any, local: datetime) -> bool:
    """Whether an outlet with ``hours`` is open at the local time ``local``."""
    if is_24h(hours):
        return True
    if not isinstance(hours, dict):
        return False
    spans = hours.get(DAYS[local.weekday()]) or []
    now = local.time()
    for text in spans if isinstance(spans, list) else [spans]:
        span = _span(str(text))
        if span is not None and span[0] <= now < span[1]:
            return True
    return False


def describe(hours: Any) -> str:
    """A short human text of the hours, for the map and the outlet page."""
    if is_24h(hours):
        return "24h"
    if not isinstance(hours, dict):
        return "?"
    return "; ".join(f"{day} {','.join(map(str, hours[day]))}" for day in DAYS if hours.get(day))
