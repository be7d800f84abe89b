"""Each outlet's desired ``opening_hours`` and ``alerts``, re-read only where it changed.

The alert engine needs both for every outlet at every evaluation (every 5 s by default).
Reading them whole meant decoding two JSON values per outlet each time: at 10,000
outlets about a third of an evaluation's CPU, taken from the ingest and delivery
threads of the same process (docs/performance.md, "Clerk → upstream"). A desired
config changes only when it is signed again, and its ``desired_hash`` changes with it
(both are written together: ``config/outlet_rows.py``), so one narrow read of the
hashes finds the outlets whose parts must be read again.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from fleet_server.config.outlet_rows import desired_hash_changes
from fleet_server.config.tables import OutletConfig

__all__ = ["ConfigParts"]

_CHUNK: Final = 500  # outlet ids per IN (...), below SQLite's bound-parameter limit


class ConfigParts:
    """Outlet → (desired opening hours, desired alerts); only outlets with either set."""

    def __init__(self) -> None:
        self._hashes: dict[str, str | None] = {}
        self._parts: dict[str, tuple[Any, Any]] = {}

    def read(self, session: Session) -> dict[str, tuple[Any, Any]]:
        """The parts as stored now; the returned dict must not be changed."""
        hashes, changed = desired_hash_changes(session, self._hashes)
        stale = set(changed)
        parts = {
            outlet: part
            for outlet, part in self._parts.items()
            if outlet in hashes and outlet not in stale
        }
        hours = OutletConfig.desired["opening_hours"]
        alerts = OutletConfig.desired["alerts"]
        for start in range(0, len(changed), _CHUNK):
            rows = session.execute(
                select(OutletConfig.outlet_id, hours, alerts).where(
                    OutletConfig.outlet_id.in_(changed[start : start + _CHUNK]),
                    or_(hours.is_not(None), alerts.is_not(None)),
                )
            )
            parts.update({outlet: (h, a) for outlet, h, a in rows})
        self._hashes, self._parts = hashes, parts
        return parts
