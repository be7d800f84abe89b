"""Where a transaction is (never its body: it holds PII).

A transaction is named by its outlet and its ``tx_id`` (two outlets may use the same
``tx_id``): ``/api/v1/outlets/{outlet_id}/transactions/{tx_id}``. Delivery figures for
the whole fleet are at ``/api/v1/transactions/status``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel
from sqlalchemy import func, select

from fleet_server.api.deps import AppStateDep, SessionDep
from fleet_server.api.schemas import ErrorPublic
from fleet_server.api.scope import ScopeDep
from fleet_server.models import DeliveryAttempt, InboxEntry

router = APIRouter(tags=["transactions"])


class AttemptPublic(BaseModel):
    """One delivery attempt."""

    attempt: int
    target: str | None
    at: datetime
    outcome: str
    status_code: int | None
    error: str | None
    duration_ms: int


class TransactionPublic(BaseModel):
    """An inbox row's delivery state."""

    tx_id: str
    outlet_id: str
    idempotency_key: str
    tx_kind: str
    received_at: datetime
    item_code: str | None
    region_code: str | None
    window: str | None
    state: str
    target: str | None
    attempts: int
    next_due_at: datetime | None
    last_error: str | None
    delivered_at: datetime | None
    case_number: str | None
    result_pending: bool
    history: list[AttemptPublic] = []


class DeliveryStatusPublic(BaseModel):
    """Inbox rows by state, and each target's circuit breaker."""

    by_state: dict[str, int]
    breakers: dict[str, str]
    counters: dict[str, int]


@router.get("/transactions/status")
def read_status(session: SessionDep, state: AppStateDep, scope: ScopeDep) -> DeliveryStatusPublic:
    """Counts by inbox state; breaker state per target; worker counters. A scoped user
    gets their outlets' counts and no worker figures (those are the whole server's)."""
    rows = session.execute(
        select(InboxEntry.state, func.count())
        .where(scope.outlet_clause(InboxEntry.outlet_id))
        .group_by(InboxEntry.state)
    )
    worker = state.delivery if scope.whole_fleet else None
    return DeliveryStatusPublic(
        by_state={name: int(count) for name, count in rows},
        breakers=dict(worker.breaker_states()) if worker is not None else {},
        counters=dict(worker.counters) if worker is not None else {},
    )


@router.get("/transactions")
def read_transactions(
    session: SessionDep,
    scope: ScopeDep,
    state_: Annotated[
        Literal["pending", "delivered", "dead", "local"] | None, Query(alias="state")
    ] = None,
    outlet_id: Annotated[str | None, Query(max_length=64)] = None,
    tx_kind: Annotated[str | None, Query(max_length=32)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**6)] = 0,
) -> list[TransactionPublic]:
    """The scope's transactions, newest received first, without attempts (one
    transaction's page has them): by state, outlet, kind and ``since`` ≤ received < ``until``;
    ``limit`` rows from ``offset``."""
    query = (
        select(InboxEntry)
        .where(scope.outlet_clause(InboxEntry.outlet_id))
        .order_by(InboxEntry.received_at.desc(), InboxEntry.id.desc())
        .offset(offset)
        .limit(limit)
    )
    for column, value in (
        (InboxEntry.state, state_), (InboxEntry.outlet_id, outlet_id),
        (InboxEntry.tx_kind, tx_kind),
    ):  # fmt: skip
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(InboxEntry.received_at >= since)
    if until is not None:
        query = query.where(InboxEntry.received_at < until)
    return [
        TransactionPublic.model_validate(e, from_attributes=True) for e in session.scalars(query)
    ]


@router.get(
    "/outlets/{outlet_id}/transactions/{tx_id}",
    responses={status.HTTP_404_NOT_FOUND: {"model": ErrorPublic}},
)
def read_transaction(session: SessionDep, outlet_id: str, tx_id: str) -> TransactionPublic:
    """One transaction of one outlet, its state and attempts; 404 if never stored."""
    entry = session.scalars(
        select(InboxEntry).where(InboxEntry.outlet_id == outlet_id, InboxEntry.tx_id == tx_id)
    ).one_or_none()
    if entry is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"transaction {tx_id!r} of outlet {outlet_id!r} not found",
        )
    history = session.scalars(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.inbox_id == entry.id)
        .order_by(DeliveryAttempt.id)
    )
    public = TransactionPublic.model_validate(entry, from_attributes=True)
    return public.model_copy(
        update={"history": [AttemptPublic.model_validate(a, from_attributes=True) for a in history]}
    )
