"""``GET /audit`` (admin): the audit log, filtered, newest first. No write endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from fleet_server.api.auth import ADMIN
from fleet_server.api.deps import SessionDep
from fleet_server.api.security_schemas import AuditPublic
from fleet_server.security import audit as ops

router = APIRouter(prefix="/audit", tags=["audit"], dependencies=[ADMIN])


@router.get("")
def read_audit(
    session: SessionDep,
    actor: str | None = None,
    action: Annotated[str | None, Query(description="exact, or a prefix ending in .*")] = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="older than this entry (next page)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=ops.MAX_LIMIT)] = 100,
) -> list[AuditPublic]:
    """Entries matching every filter given, newest first."""
    rows = ops.query(
        session, actor=actor, action=action, target=target, since=since, until=until,
        before_id=before_id, limit=limit,
    )  # fmt: skip
    return [
        AuditPublic(
            id=row.id,
            at=row.at,
            actor=row.actor,
            action=row.action,
            target=row.target,
            before=row.before,
            after=row.after,
        )
        for row in rows
    ]
