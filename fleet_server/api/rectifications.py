"""``/api/v1/rectifications``: 差评 tickets with deadlines, and their follow-ups.

Follow-up notes are free text that may name the citizen called back: sealed at rest
(``piivault.SealedText``) and shown as ``***`` to viewers (operators and up read them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel, Field

from fleet_server.api.auth import Authenticated
from fleet_server.api.deps import SessionDep, operators_see_a_change
from fleet_server.api.errors import RowId
from fleet_server.api.schemas import ErrorPublic
from fleet_server.api.scope import ScopeDep
from fleet_server.evaluations.rectifications import (
    FollowUpAction,
    add_follow_up,
    follow_ups,
    page_rectifications,
)
from fleet_server.models import Evaluation, Rectification
from fleet_server.security import Principal, Role, audit

router = APIRouter(prefix="/rectifications", tags=["rectifications"])


# What a viewer sees instead of a note: notes may name the citizen called back.
MASKED_NOTE = "***"
DEFAULT_LIMIT = 50
MAX_LIMIT = 500  # each ticket brings its evaluation and follow-ups along
# Bounded so a huge offset is a 422, not a database integer overflow (as for outlets).
MAX_OFFSET = 10_000_000


class FollowUpPublic(BaseModel):
    """One follow-up record; ``note`` is ``***`` (``note_masked``) for viewers."""

    id: int
    at: datetime
    action: str
    note: str
    note_masked: bool = False
    by: str
    closes: bool

    def masked(self) -> FollowUpPublic:
        """The record as a viewer may see it."""
        return self.model_copy(update={"note": MASKED_NOTE, "note_masked": True})


class FollowUpCreate(BaseModel):
    """A follow-up to record; ``closes`` closes the ticket."""

    action: FollowUpAction
    note: Annotated[str, Field(min_length=1, max_length=4000)]
    by: Annotated[str, Field(min_length=1, max_length=128)]
    closes: bool = False


class RectificationPublic(BaseModel):
    """A ticket with its evaluation's facts and follow-ups."""

    id: int
    outlet_id: str
    window: str | None
    tx_id: str | None
    case_number: str | None
    stars: int | None
    real_name: bool | None
    opened_at: datetime
    deadline_at: datetime
    status: str
    closed_at: datetime | None
    overdue: bool
    follow_ups: list[FollowUpPublic]


def _public(
    session: SessionDep, row: Rectification, *, now: datetime, reveal: bool
) -> RectificationPublic:
    evaluation = session.get(Evaluation, row.evaluation_id)
    overdue = (row.status == "open" and row.deadline_at < now) or (
        row.closed_at is not None and row.closed_at > row.deadline_at
    )
    return RectificationPublic(
        id=row.id,
        outlet_id=row.outlet_id,
        window=row.window,
        tx_id=evaluation.tx_id if evaluation else None,
        case_number=evaluation.case_number if evaluation else None,
        stars=evaluation.stars if evaluation else None,
        real_name=evaluation.real_name if evaluation else None,
        opened_at=row.opened_at,
        deadline_at=row.deadline_at,
        status=row.status,
        closed_at=row.closed_at,
        overdue=overdue,
        follow_ups=[
            _follow_up(FollowUpPublic.model_validate(f, from_attributes=True), reveal=reveal)
            for f in follow_ups(session, row.id)
        ],
    )


def _follow_up(public: FollowUpPublic, *, reveal: bool) -> FollowUpPublic:
    return public if reveal else public.masked()


def _reveals(principal: Principal) -> bool:
    """Operators and up (who record follow-ups) read notes; viewers get them masked."""
    return principal.role.allows(Role.OPERATOR)


class RectificationPagePublic(BaseModel):
    """One page of tickets; ``total`` counts every ticket the filters match."""

    items: list[RectificationPublic]
    total: int
    limit: int
    offset: int


@router.get("")
def read_rectifications(
    session: SessionDep,
    principal: Authenticated,
    scope: ScopeDep,
    outlet: str | None = None,
    status_: Annotated[Literal["open", "closed"] | None, Query(alias="status")] = None,
    overdue: bool = False,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> RectificationPagePublic:
    """A page (``limit``/``offset``) newest first; ``?outlet=``, ``?status=open|closed``,
    ``?overdue=true``."""
    now = datetime.now(UTC)
    page = page_rectifications(
        session, outlet_id=outlet, status=status_, overdue_at=now if overdue else None,
        limit=limit, offset=offset, scope=scope,
    )  # fmt: skip
    reveal = _reveals(principal)
    return RectificationPagePublic(
        items=[_public(session, row, now=now, reveal=reveal) for row in page.rows],
        total=page.total,
        limit=limit,
        offset=offset,
    )


@router.post(
    "/{rectification_id}/follow-up",
    responses={404: {"model": ErrorPublic}, 409: {"model": ErrorPublic}},
)
def post_follow_up(
    request: Request,
    session: SessionDep,
    rectification_id: RowId,
    follow_up: FollowUpCreate,
    principal: Authenticated,
) -> RectificationPublic:
    """Record a follow-up (回访, 整改, 反馈, 解释说明); 409 if the ticket is closed."""
    row = session.get(Rectification, rectification_id)
    if row is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"rectification {rectification_id} not found"
        )
    now = datetime.now(UTC)
    try:
        add_follow_up(
            session, row, action=follow_up.action, note=follow_up.note, by=follow_up.by,
            closes=follow_up.closes, now=now,
        )  # fmt: skip
    except ValueError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    audit.record(  # the note is free text a citizen may be named in: not copied
        session,
        actor=principal.name,
        action="rectification.follow_up",
        target=f"rectification:{rectification_id}",
        after={"action": follow_up.action, "closes": follow_up.closes, "status": row.status},
    )
    session.commit()
    operators_see_a_change(request)
    return _public(session, row, now=now, reveal=_reveals(principal))
