"""The audit log: one row per change, added in the caller's transaction.

Callers ``record(session, actor=..., action=..., target=..., before=..., after=...)``
before their own commit, so a change never commits without its entry. Never put personal
data in ``before``/``after`` (docs/security.md, "Audit log").
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.models import AuditEntry

MAX_LIMIT = 1000


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Add one audit row to ``session`` (committed with the caller's change)."""
    entry = AuditEntry(
        at=at or datetime.now(UTC),
        actor=actor[:64],
        action=action[:64],
        target=target[:128],
        before=before,
        after=after,
    )
    session.add(entry)
    return entry


def query(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> Sequence[AuditEntry]:
    """Entries matching every given filter, newest first; ``action`` ending in ``.*``
    matches a prefix (``enrollment.*``); ``before_id``: the next page, older than that
    entry (entries share timestamps, ids never)."""
    statement = select(AuditEntry)
    if before_id is not None:
        statement = statement.where(AuditEntry.id < before_id)
    if actor is not None:
        statement = statement.where(AuditEntry.actor == actor)
    if action is not None:
        if action.endswith(".*"):
            statement = statement.where(AuditEntry.action.startswith(action[:-1]))
        else:
            statement = statement.where(AuditEntry.action == action)
    if target is not None:
        statement = statement.where(AuditEntry.target == target)
    if since is not None:
        statement = statement.where(AuditEntry.at >= since)
    if until is not None:
        statement = statement.where(AuditEntry.at < until)
    statement = statement.order_by(AuditEntry.id.desc()).limit(min(max(limit, 1), MAX_LIMIT))
    return session.scalars(statement).all()
