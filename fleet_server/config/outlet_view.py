"""One outlet's config as operators see it, and the fleet's outlets not in sync.

Read-only: ``outlet_configs`` rows are written by the reconciler (what was signed) and
the ingest (what the agent reported). The status compares the two:

- ``unknown``: the agent never reported a config (nor refused one);
- ``refused``: the agent refused the desired version (``reason`` says why);
- ``pending``: the agent has not reached the desired version yet, or the scopes give
  an effective config not signed yet (waiting to be published, or held for closed
  hours);
- ``drifting``: the agent reports another config than the desired one at the desired
  version or later;
- ``in_sync``: the agent runs the desired config and nothing newer is waiting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.config.effective import (
    Effective,
    OutletPlace,
    current_documents,
    effective_all,
    effective_for,
)
from fleet_server.config.tables import ConfigScope, OutletConfig
from govedge_wire.config import config_hash

Status = Literal["in_sync", "drifting", "pending", "refused", "unknown"]


@dataclass(frozen=True, slots=True)
class SyncState:
    """An outlet's status, since when, and why (None when in sync)."""

    status: Status
    since: datetime | None
    reason: str | None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def pending_publication(row: OutletConfig | None, effective: Effective) -> bool:
    """The scopes give this outlet a config not signed for it yet, or one held back."""
    if row is not None and row.held is not None:
        return True
    if row is None or row.desired_hash is None:
        # As the reconciler: an empty config is never signed for an outlet that never
        # had one, so nothing waits (an unconfigured fleet shows in sync, not pending).
        return bool(effective.config)
    return row.desired_hash != config_hash(effective.config)


def sync_state(
    row: OutletConfig | None, *, pending: bool, scopes_changed_at: datetime | None
) -> SyncState:
    """The status of one outlet from its row and whether a new config awaits publication."""
    waiting = SyncState("pending", scopes_changed_at, _waiting_reason(row))
    if row is None or (row.reported_at is None and row.refused_at is None):
        return SyncState("unknown", None, "the agent has not reported a config yet")
    if (
        row.refused_version is not None
        and row.refused_version == row.desired_version
        and row.reported_hash != row.desired_hash
    ):
        detail = f": {row.refused_detail}" if row.refused_detail else ""
        return SyncState("refused", row.refused_at, f"{row.refused_reason}{detail}")
    if row.reported_hash == row.desired_hash:
        return waiting if pending else SyncState("in_sync", row.in_sync_since, None)
    if row.reported_version is None or row.reported_version < row.desired_version:
        return SyncState(
            "pending",
            row.published_at or row.issued_at,
            f"agent at version {row.reported_version or 0}, "
            f"desired version {row.desired_version} sent",
        )
    return SyncState(
        "drifting",
        row.drifting_since or row.reported_at,
        f"agent reports version {row.reported_version} hash {(row.reported_hash or '')[:12]}, "
        f"desired hash {(row.desired_hash or '')[:12]}",
    )


def _waiting_reason(row: OutletConfig | None) -> str:
    if row is not None and row.held is not None:
        return f"held for closed hours: {row.held.get('reason') or 'takes devices away'}"
    return "a new effective config waits to be signed and published"


def _unplaced(outlet_id: str, documents: Mapping[str, Mapping[str, Any]]) -> Effective:
    # A config row for an outlet neither registered nor profiled: global and its own scope.
    return effective_for(OutletPlace(outlet_id, None, None), documents)


def _stamp(value: datetime | None) -> float:
    return value.timestamp() if value is not None else 0.0


def _scopes_changed_at(session: Session, effective: Effective) -> datetime | None:
    names = [str(scope) for scope in effective.layers]
    times = session.scalars(select(ConfigScope.updated_at).where(ConfigScope.scope.in_(names)))
    return max(times, default=None)


def outlet_view(session: Session, outlet_id: str) -> dict[str, Any] | None:
    """Desired, effective now, reported, last refusal, status and provenance; None if
    the outlet is unknown (no registry entry, profile or config row)."""
    row = session.get(OutletConfig, outlet_id)
    effective = effective_all(session, outlet_ids=[outlet_id]).get(outlet_id)
    if effective is None:
        if row is None:
            return None
        effective = _unplaced(outlet_id, current_documents(session))
    pending = pending_publication(row, effective)
    changed_at = _scopes_changed_at(session, effective)
    state = sync_state(row, pending=pending, scopes_changed_at=changed_at)
    return {
        "outlet_id": outlet_id,
        "status": state.status,
        "since": _iso(state.since),
        "reason": state.reason,
        "desired": None if row is None else {
            "version": row.desired_version, "hash": row.desired_hash,
            "issued_at": _iso(row.issued_at), "published_at": _iso(row.published_at),
            "config": row.desired,
        },
        "effective": {
            "config": effective.config, "hash": config_hash(effective.config),
            "pending_publication": pending,
            "held": None if row is None else row.held,
            "layers": [str(scope) for scope in effective.layers],
        },
        "reported": None if row is None or row.reported_at is None else {
            "version": row.reported_version, "hash": row.reported_hash,
            "at": _iso(row.reported_at),
        },
        "last_refusal": None if row is None or row.refused_at is None else {
            "version": row.refused_version, "reason": row.refused_reason,
            "detail": row.refused_detail, "at": _iso(row.refused_at),
        },
        "provenance": {path: str(scope) for path, scope in sorted(effective.provenance.items())},
    }  # fmt: skip


def drift(session: Session) -> list[dict[str, Any]]:
    """Every outlet not in sync, the longest-standing first (unknown since last)."""
    documents = current_documents(session)
    effectives = effective_all(session, documents=documents)
    rows = {row.outlet_id: row for row in session.scalars(select(OutletConfig))}
    changed = {scope.scope: scope.updated_at for scope in session.scalars(select(ConfigScope))}
    found = []
    for outlet_id in sorted(set(effectives) | set(rows)):
        row = rows.get(outlet_id)
        effective = effectives.get(outlet_id) or _unplaced(outlet_id, documents)
        times = [changed[str(s)] for s in effective.layers if str(s) in changed]
        state = sync_state(
            row,
            pending=pending_publication(row, effective),
            scopes_changed_at=max(times, default=None),
        )
        if state.status == "in_sync":
            continue
        found.append((state, outlet_id, row))
    found.sort(key=lambda item: (item[0].since is None, _stamp(item[0].since), item[1]))
    return [
        {"outlet_id": outlet_id, "status": state.status, "since": _iso(state.since),
         "reason": state.reason,
         "desired_version": None if row is None else row.desired_version,
         "reported_version": None if row is None else row.reported_version}
        for state, outlet_id, row in found
    ]  # fmt: skip
