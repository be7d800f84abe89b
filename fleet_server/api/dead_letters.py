"""``/api/v1/dead-letters``: transactions that need an operator; inspect and replay."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel
from sqlalchemy import select

from fleet_server.api.auth import Authenticated
from fleet_server.api.deps import AppStateDep, SessionDep, operators_see_a_change
from fleet_server.api.errors import RowId
from fleet_server.api.schemas import ErrorPublic
from fleet_server.api.scope import ScopeDep
from fleet_server.models import DeadLetter, DeliveryAttempt, InboxEntry
from fleet_server.piivault import VaultError
from fleet_server.routing.store import replay_dead_letter
from fleet_server.security import audit
from govedge_wire.pii import mask_id_number, mask_name

router = APIRouter(prefix="/dead-letters", tags=["dead-letters"])


class DeadLetterPublic(BaseModel):
    """A dead letter: why it died, where it was going."""

    id: int
    tx_id: str
    outlet_id: str
    tx_kind: str
    target: str | None
    reason: str
    detail: str | None
    status_code: int | None
    attempts: int
    created_at: datetime
    replayed_at: datetime | None


class DeadLetterDetailPublic(DeadLetterPublic):
    """A dead letter with its transaction summary (PII masked) and attempts."""

    item_code: str | None
    region_code: str | None
    window: str | None
    applicant: dict[str, str] | None
    transaction_state: str
    attempt_history: list[dict[str, object]]


def _get(session: SessionDep, dead_letter_id: RowId) -> DeadLetter:
    row = session.get(DeadLetter, dead_letter_id)
    if row is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"dead letter {dead_letter_id} not found"
        )
    return row


@router.get("")
def read_dead_letters(
    session: SessionDep,
    scope: ScopeDep,
    reason: str | None = None,
    target: str | None = None,
    include_replayed: bool = False,
    outlet_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: int = 500,
    offset: Annotated[int, Query(ge=0, le=10**6)] = 0,
) -> list[DeadLetterPublic]:
    """Newest first; only those not yet replayed unless ``?include_replayed=true``;
    ``limit`` rows from ``offset`` (a page)."""
    query = (
        select(DeadLetter)
        .where(scope.outlet_clause(DeadLetter.outlet_id))
        .order_by(DeadLetter.id.desc())
        .offset(offset)
        .limit(min(max(limit, 1), 5000))
    )
    if reason is not None:
        query = query.where(DeadLetter.reason == reason)
    if target is not None:
        query = query.where(DeadLetter.target == target)
    if outlet_id is not None:
        query = query.where(DeadLetter.outlet_id == outlet_id)
    if not include_replayed:
        query = query.where(DeadLetter.replayed_at.is_(None))
    return [
        DeadLetterPublic.model_validate(r, from_attributes=True) for r in session.scalars(query)
    ]


@router.get("/{dead_letter_id}", responses={404: {"model": ErrorPublic}})
def read_dead_letter(session: SessionDep, dead_letter_id: RowId) -> DeadLetterDetailPublic:
    """One dead letter with the masked applicant and every delivery attempt."""
    row = _get(session, dead_letter_id)
    entry = session.get(InboxEntry, row.inbox_id)
    applicant = None
    try:
        body = entry.body if entry is not None else {}
    except VaultError:  # an "unreadable" dead letter: its body does not open for this row
        body = {}
    if isinstance(body.get("applicant"), dict):
        person = body["applicant"]
        applicant = {
            "name": mask_name(str(person.get("name") or "")),
            "id_number": mask_id_number(str(person.get("id_number") or "")),
        }
    attempts = session.scalars(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.inbox_id == row.inbox_id)
        .order_by(DeliveryAttempt.id)
    )
    base = DeadLetterPublic.model_validate(row, from_attributes=True)
    return DeadLetterDetailPublic(
        **base.model_dump(),
        item_code=entry.item_code if entry else None,
        region_code=entry.region_code if entry else None,
        window=entry.window if entry else None,
        applicant=applicant,
        transaction_state=entry.state if entry else "gone",
        attempt_history=[
            {
                "attempt": a.attempt,
                "target": a.target,
                "at": a.at.isoformat(),
                "outcome": a.outcome,
                "status_code": a.status_code,
                "error": a.error,
            }
            for a in attempts
        ],
    )


@router.post(
    "/{dead_letter_id}/replay",
    responses={404: {"model": ErrorPublic}, 409: {"model": ErrorPublic}},
)
def replay(
    request: Request,
    session: SessionDep,
    state: AppStateDep,
    dead_letter_id: RowId,
    principal: Authenticated,
) -> DeadLetterPublic:
    """Route and deliver the transaction again (attempts reset); 409 if already replayed."""
    row = _get(session, dead_letter_id)
    try:
        replay_dead_letter(session, row, now=datetime.now(UTC))
    except ValueError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    audit.record(  # ids and reasons only: never the transaction body (PII)
        session,
        actor=principal.name,
        action="dead_letter.replay",
        target=f"dead_letter:{dead_letter_id}",
        before={"outlet_id": row.outlet_id, "tx_id": row.tx_id, "reason": row.reason},
        after={"replayed": True},
    )
    session.commit()
    if state.delivery is not None:
        state.delivery.wake()
    operators_see_a_change(request)
    return DeadLetterPublic.model_validate(row, from_attributes=True)
