"""What the fleetctl command groups print alike."""

from __future__ import annotations


def when(value: str | None) -> str:
    """An API timestamp as a table shows it: ``2026-12-06 08:00:00``, or ``-``."""
    return "-" if not value else value.replace("T", " ").split(".")[0].split("+")[0]
