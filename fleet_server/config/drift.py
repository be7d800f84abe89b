"""Which outlets run another config than the desired one, for the ``config_drift`` rule.

``drifting_since`` is kept by the reconciler (set when a new version is issued that the
agent does not run) and by the report desk (cleared once the agent reports the desired
hash). A refusal counts while it concerns the desired version: a refusal of an older
version is history once a newer one was issued.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from fleet_server.config.tables import OutletConfig


def refusal_is_current(
    *,
    refused_reason: str | None,
    refused_version: int | None,
    refused_at: datetime | None,
    desired_version: int,
    issued_at: datetime | None,
) -> bool:
    """Whether a stored refusal concerns the desired version (or came after it)."""
    if refused_reason is None:
        return False
    if refused_version is not None:
        return refused_version >= desired_version
    return issued_at is None or (refused_at is not None and refused_at >= issued_at)


def config_drift_facts(session: Session) -> dict[str, dict[str, Any]]:
    """Outlet → ``OutletFacts`` fields, for outlets drifting or refusing (one query)."""
    c = OutletConfig
    rows = session.execute(
        select(
            c.outlet_id, c.drifting_since, c.refused_reason, c.refused_version, c.refused_at,
            c.desired_version, c.issued_at,
        ).where(or_(c.drifting_since.is_not(None), c.refused_reason.is_not(None)))
    )  # fmt: skip
    facts: dict[str, dict[str, Any]] = {}
    for outlet, since, reason, version, refused_at, desired_version, issued_at in rows:
        current = refusal_is_current(
            refused_reason=reason,
            refused_version=version,
            refused_at=refused_at,
            desired_version=desired_version,
            issued_at=issued_at,
        )
        facts[outlet] = {
            "config_drifting_since": since,
            "config_refused": reason if current else None,
        }
    return facts
