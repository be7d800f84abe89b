"""Rectification tickets (整改) opened by 差评: list them and record follow-ups."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet_server.evaluations.scoping import ALL_OUTLETS, OutletFilter
from fleet_server.models import Rectification, RectificationFollowUp

__all__ = [
    "FollowUpAction",
    "RectificationPage",
    "add_follow_up",
    "follow_ups",
    "page_rectifications",
]

# 回访 (call the citizen back), 整改 (the fix), 反馈 (reply to the citizen), 解释说明.
FollowUpAction = Literal["回访", "整改", "反馈", "解释说明"]


@dataclass(frozen=True)
class RectificationPage:
    """One page of tickets and how many match in all."""

    rows: list[Rectification]
    total: int


def page_rectifications(
    session: Session,
    *,
    outlet_id: str | None = None,
    status: Literal["open", "closed"] | None = None,
    overdue_at: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
    scope: OutletFilter = ALL_OUTLETS,
) -> RectificationPage:
    """A page of the tickets of the outlets in ``scope``, newest first; ``overdue_at``
    keeps only those open past their deadline. Counted and paged in SQL."""
    query = select(Rectification).where(scope.outlet_clause(Rectification.outlet_id))
    if outlet_id is not None:
        query = query.where(Rectification.outlet_id == outlet_id)
    if status is not None:
        query = query.where(Rectification.status == status)
    if overdue_at is not None:
        query = query.where(Rectification.status == "open", Rectification.deadline_at < overdue_at)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Rectification.id.desc()).limit(limit).offset(offset))
    return RectificationPage(rows=list(rows), total=total)


def follow_ups(session: Session, rectification_id: int) -> list[RectificationFollowUp]:
    """A ticket's follow-ups, oldest first."""
    return list(
        session.scalars(
            select(RectificationFollowUp)
            .where(RectificationFollowUp.rectification_id == rectification_id)
            .order_by(RectificationFollowUp.id)
        )
    )


def add_follow_up(
    session: Session,
    ticket: Rectification,
    *,
    action: FollowUpAction,
    note: str,
    by: str,
    closes: bool,
    now: datetime,
) -> RectificationFollowUp:
    """Record a follow-up; ``closes`` closes the ticket. A closed ticket takes none."""
    if ticket.status == "closed":
        raise ValueError("the rectification is already closed")
    follow_up = RectificationFollowUp(
        rectification_id=ticket.id, at=now, action=action, note=note, by=by, closes=closes
    )
    session.add(follow_up)
    if closes:
        ticket.status = "closed"
        ticket.closed_at = now
    return follow_up
