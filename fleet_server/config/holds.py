"""Changes held for closed hours: which outlets wait, and until when.

A scope version saved with ``closed_hours_only`` reaches an outlet only while the outlet
is closed (or, for an outlet that never closes, in its ``quiet_window``). A layer counts
as changed for an outlet when its current version was made after the outlet's last
signed config, so the decision needs no memory of its own: a later change to another
scope keeps the earlier held change held. The hours are the effective config's
``opening_hours``, else the outlet profile's (fleet_server/health/hours.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.config.tables import ConfigScope, ConfigVersion
from fleet_server.health.hours import is_24h, may_take_devices, next_closed, zone_of
from govedge_wire.config import Scope


@dataclass(frozen=True, slots=True)
class LayerVersion:
    """A scope's current version: when it was made and whether it waits for closed hours."""

    version: int
    created_at: datetime
    closed_hours_only: bool


@dataclass(frozen=True, slots=True)
class Hold:
    """A change that must wait: why, and the first time it may go (None: not foreseeable)."""

    reason: str
    not_before: datetime | None


def current_layer_versions(session: Session) -> dict[str, LayerVersion]:
    """Every scope's current version, by scope text."""
    rows = session.execute(
        select(
            ConfigVersion.scope,
            ConfigVersion.version,
            ConfigVersion.created_at,
            ConfigVersion.closed_hours_only,
        ).join(
            ConfigScope,
            (ConfigScope.scope == ConfigVersion.scope)
            & (ConfigScope.version == ConfigVersion.version),
        )
    )
    return {
        scope: LayerVersion(int(version), created_at, bool(closed))
        for scope, version, created_at, closed in rows
    }


def waiting_scopes(
    layers: Sequence[Scope], versions: Mapping[str, LayerVersion], *, since: datetime | None
) -> list[str]:
    """The outlet's layers changed after ``since`` (its last signed config; None: never)
    whose current version is ``closed_hours_only``."""
    found = []
    for scope in layers:
        meta = versions.get(str(scope))
        if meta is None or not meta.closed_hours_only:
            continue
        if since is None or meta.created_at > since:
            found.append(str(scope))
    return found


def hours_for(config: Mapping[str, Any], profile_hours: Any) -> Any:
    """The hours that decide: the effective config's, else the profile's."""
    hours = config.get("opening_hours")
    return hours if isinstance(hours, dict) and hours else profile_hours


def hold_for(hours: Any, *, now: datetime, default_zone: str, scopes: Sequence[str]) -> Hold | None:
    """None when a change of ``scopes`` may apply at ``now``; else why and until when."""
    local = now.astimezone(zone_of(hours, default_zone))
    if may_take_devices(hours, local):
        return None
    when = next_closed(hours, local)
    if is_24h(hours):
        why = "never closes: waits for the quiet window"
        if when is None:
            why = "never closes and has no quiet_window: waits until one is configured"
    else:
        why = "open now: waits for closed hours"
    return Hold(
        reason=f"{why} ({', '.join(scopes)} closed_hours_only)",
        not_before=when.astimezone(UTC) if when is not None else None,
    )
