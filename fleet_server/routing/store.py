"""Durable delivery state: claim due inbox rows, record attempts, dead letters, replay.

Every function takes a ``Session`` and leaves the commit to the caller, except where
a claim must be atomic on its own (``claim``): rows are claimed by a conditional
UPDATE of their lease, so two server processes never deliver the same row at once, and
a crashed process's claim simply expires.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, defer

from fleet_server.models import DeadLetter, DeliveryAttempt, InboxEntry
from fleet_server.routing.http_adapter import DeliveryResult
from fleet_server.routing.routes import CatalogueRoutes, RoutedItem
from fleet_server.routing.targets import TargetConfig, TargetsConfig
from fleet_server.transactions.materials import MaterialPart

__all__ = [
    "Claimed",
    "backoff_s",
    "claim",
    "due_rows",
    "note_targets",
    "record_attempt",
    "replay_dead_letter",
    "route",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Claimed:
    """A row this worker holds the lease on, with the document to send."""

    inbox_id: int
    tx_id: str
    outlet_id: str
    target: str
    idempotency_key: str
    attempts: int
    document: dict[str, Any]
    # A submission's materials, streamed from the store when the document is sent.
    materials: tuple[MaterialPart, ...] = ()


def backoff_s(attempt: int, *, base_s: float, max_s: float, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(max, base * 2^(attempt-1))]."""
    ceiling = min(max_s, base_s * 2 ** min(attempt - 1, 32))
    return rng.uniform(0, ceiling)


def due_rows(
    session: Session, *, now: datetime, limit: int, skip_targets: Collection[str] = ()
) -> list[InboxEntry]:
    """Pending rows whose time has come and that nobody holds, oldest due first; none
    routed to ``skip_targets`` (those that cannot take a row now: share of the pool full,
    breaker refusing): a platform slow or down for a while has more due rows than a
    round reads, and they would fill every round's window while the others' rows waited
    behind them."""
    statement = select(InboxEntry).where(
        InboxEntry.state == "pending",
        InboxEntry.next_due_at <= now,
        or_(InboxEntry.lease_until.is_(None), InboxEntry.lease_until < now),
    )
    if skip_targets:
        statement = statement.where(
            or_(InboxEntry.target.is_(None), InboxEntry.target.not_in(sorted(skip_targets)))
        )
    return list(
        session.scalars(
            statement.order_by(InboxEntry.next_due_at, InboxEntry.id)
            .limit(limit)
            # Planning needs the routing columns only; the sealed bodies are read for the
            # rows claimed (the worker: one read a round), not for all the rows looked at.
            .options(defer(InboxEntry.sealed_body))
        )
    )


def route(
    session: Session, entry: InboxEntry, *, targets: TargetsConfig, routes: CatalogueRoutes
) -> tuple[str | None, RoutedItem | None, str | None]:
    """(target name, catalogue item, why-not): where ``entry`` goes, or why nowhere."""
    if entry.tx_kind == "evaluation":
        if targets.evaluation_target is None:
            return None, None, "no evaluation_target configured"
        return targets.evaluation_target, None, None
    if entry.item_code is None or entry.region_code is None:
        return None, None, "submission has no item or region"
    item = routes.resolve(session, item_code=entry.item_code, region_code=entry.region_code)
    if item is None:
        return None, None, f"no catalogue item {entry.item_code} for region {entry.region_code}"
    if targets.get(item.target) is None:
        return None, item, f"catalogue target {item.target!r} is not configured"
    return item.target, item, None


def note_targets(session: Session, routed: dict[str, list[int]]) -> None:
    """Record the target each pending row of ``routed`` (target -> inbox ids) is routed to
    although it was not sent (its target could not take it), so that ``due_rows`` can
    leave it out while that lasts. Not committed here."""
    for target, ids in routed.items():
        session.execute(
            update(InboxEntry)
            .where(InboxEntry.id.in_(ids), InboxEntry.state == "pending")
            .values(target=target)
            .execution_options(synchronize_session=False)
        )


def claim(session: Session, targets: dict[int, str], *, lease_until: datetime) -> set[int]:
    """Take the lease on each row of ``targets`` (inbox id -> target) that is still free;
    the ids taken. One UPDATE per target and one commit, on its own."""
    now = datetime.now(lease_until.tzinfo)
    by_target: dict[str, list[int]] = {}
    for inbox_id, target in targets.items():
        by_target.setdefault(target, []).append(inbox_id)
    taken: set[int] = set()
    for target, ids in by_target.items():
        taken.update(
            session.scalars(
                update(InboxEntry)
                .where(
                    InboxEntry.id.in_(ids),
                    InboxEntry.state == "pending",
                    or_(InboxEntry.lease_until.is_(None), InboxEntry.lease_until < now),
                )
                .values(lease_until=lease_until, target=target)
                .returning(InboxEntry.id)
                .execution_options(synchronize_session=False)
            )
        )
    session.commit()
    return taken


def document_for(
    entry: InboxEntry,
    item: RoutedItem | None,
    *,
    materials: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The JSON sent upstream for ``entry``; ``materials`` (``MaterialPart.describe()``:
    ``ref``, ``name``, ``size``, ``sha256``) for submissions; the bytes travel apart."""
    document: dict[str, Any] = {
        "tx_id": entry.tx_id,
        "tx_kind": entry.tx_kind,
        "outlet_id": entry.outlet_id,
        "created_ts": entry.created_ts,
        "body": entry.body,
    }
    if item is not None:
        document["item"] = {
            "code": item.code,
            "base_code": item.base_code,
            "name": item.name,
            "department": item.department,
            "handling_type": item.handling_type,
            "promised_days": item.promised_days,
            "handling_mode": item.handling_mode,
        }
    if materials:
        document["materials"] = materials
    return document


def dead_letter(
    session: Session,
    entry: InboxEntry,
    *,
    reason: str,
    detail: str | None,
    status_code: int | None,
    now: datetime,
    notify: bool,
) -> None:
    """Move ``entry`` to the dead-letter queue; ``notify`` owes the outlet a result."""
    entry.state = "dead"
    entry.lease_until = None
    entry.next_due_at = None
    entry.last_error = (detail or reason)[:512]
    entry.result_pending = notify
    session.add(
        DeadLetter(
            inbox_id=entry.id,
            tx_id=entry.tx_id,
            outlet_id=entry.outlet_id,
            tx_kind=entry.tx_kind,
            target=entry.target,
            reason=reason,
            detail=(detail or "")[:512] or None,
            status_code=status_code,
            attempts=entry.attempts,
            created_at=now,
        )
    )


def record_attempt(
    session: Session,
    *,
    inbox_id: int,
    target: TargetConfig,
    result: DeliveryResult,
    now: datetime,
    rng: random.Random,
) -> InboxEntry | None:
    """Store one attempt's outcome: delivered, dead letter, or the next due time."""
    entry = session.get(InboxEntry, inbox_id)
    if entry is None or entry.state != "pending":
        return None
    entry.attempts += 1
    session.add(
        DeliveryAttempt(
            inbox_id=entry.id,
            attempt=entry.attempts,
            target=target.name,
            at=now,
            outcome=result.outcome,
            status_code=result.status_code,
            error=result.detail[:512] if result.detail else None,
            duration_ms=result.duration_ms,
        )
    )
    if result.outcome == "delivered":
        entry.state = "delivered"
        entry.delivered_at = now
        entry.lease_until = None
        entry.next_due_at = None
        entry.last_error = None
        if result.case_number is not None:
            entry.case_number = result.case_number[:64]
        entry.result_pending = True
    elif result.outcome == "permanent":
        dead_letter(
            session, entry, reason="rejected", detail=result.detail,
            status_code=result.status_code, now=now, notify=True,
        )  # fmt: skip
    elif entry.attempts >= target.max_attempts:
        dead_letter(
            session, entry, reason="exhausted", detail=result.detail,
            status_code=result.status_code, now=now, notify=False,
        )  # fmt: skip
    else:
        delay = backoff_s(
            entry.attempts, base_s=target.backoff_base_s, max_s=target.backoff_max_s, rng=rng
        )
        entry.next_due_at = now + timedelta(seconds=delay)
        entry.lease_until = None
        entry.last_error = (result.detail or "transient failure")[:512]
    return entry


def replay_dead_letter(session: Session, dead: DeadLetter, *, now: datetime) -> InboxEntry:
    """Put a dead letter's transaction back to pending, routed afresh, attempts reset."""
    entry = session.get(InboxEntry, dead.inbox_id)
    if entry is None:
        raise LookupError("the dead letter's inbox row is gone")
    if dead.replayed_at is not None or entry.state != "dead":
        raise ValueError("this dead letter was already replayed")
    dead.replayed_at = now
    entry.state = "pending"
    entry.attempts = 0
    entry.next_due_at = now
    entry.lease_until = None
    entry.target = None
    entry.result_pending = False
    return entry
