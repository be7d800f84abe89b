"""Records the figures and alert tests make directly in a real database: outlets with
profiles, submissions, evaluations, rectification tickets with follow-ups, catalogue
items. Each helper adds to an open session and returns what it made."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from fleet_server.health.tables import OutletProfile
from fleet_server.models import (
    CatalogueItem,
    Certificate,
    DeadLetter,
    Evaluation,
    InboxEntry,
    Outlet,
    Rectification,
    RectificationFollowUp,
)
from fleet_server.transactions.identity import upstream_idempotency_key
from tests.server.txkit import submission

_IDS = itertools.count(1)


def outlet(
    session: Session,
    outlet_id: str,
    *,
    kind: str,
    region: str,
    at: datetime,
    items: Sequence[str] = (),
    hours: Any = None,
) -> None:
    """An outlet with its profile (kind, region, opening hours, service items)."""
    session.add(Outlet(id=outlet_id, created_at=at))
    session.add(
        OutletProfile(
            outlet_id=outlet_id, kind=kind, region_code=region, opening_hours=hours,
            service_items=list(items), tags=[],
        )
    )  # fmt: skip


def cases(session: Session, outlet_id: str, count: int, *, at: datetime) -> None:
    """``count`` submissions (cases) received at ``at``."""
    for _ in range(count):
        tx = f"sub-{next(_IDS)}"
        session.add(
            InboxEntry(
                tx_id=tx, outlet_id=outlet_id, tx_kind="submission", body=submission(),
                idempotency_key=upstream_idempotency_key(outlet_id, tx), created_ts=0,
                received_at=at, state="delivered", attempts=1, result_pending=False,
            )
        )  # fmt: skip


def evaluations(
    session: Session, outlet_id: str, stars: Sequence[int], *, at: datetime, default: bool = False
) -> list[Evaluation]:
    """One evaluation per entry of ``stars``; ``default``: made by the system (系统默认评价)."""
    made = [
        Evaluation(
            tx_id=f"ev-{next(_IDS)}", outlet_id=outlet_id, window="W1", case_number=None,
            level_code=star, stars=star, channel="7" if default else "4", is_bad=star <= 2,
            is_default=default, real_name=True, evaluated_at=at,
        )
        for star in stars
    ]  # fmt: skip
    session.add_all(made)
    session.flush()
    return made


def ticket(
    session: Session,
    outlet_id: str,
    *,
    opened: datetime,
    days: int = 15,
    closed: datetime | None = None,
    follow_up: str | None = None,
) -> Rectification:
    """A 差评 and its rectification ticket, due ``days`` after ``opened``; ``closed``
    closes it then; ``follow_up`` records one follow-up of that action."""
    (bad,) = evaluations(session, outlet_id, [1], at=opened)
    row = Rectification(
        evaluation_id=bad.id, outlet_id=outlet_id, window="W1", opened_at=opened,
        deadline_at=opened + timedelta(days=days), status="closed" if closed else "open",
        closed_at=closed,
    )  # fmt: skip
    session.add(row)
    session.flush()
    if follow_up is not None:
        session.add(
            RectificationFollowUp(
                rectification_id=row.id, at=opened + timedelta(hours=1), action=follow_up,
                note="已回访", by="supervisor", closes=closed is not None,
            )
        )  # fmt: skip
    return row


def catalogue_item(
    session: Session, code: str, *, kinds: Sequence[str], regions: Sequence[str], at: datetime
) -> None:
    """A catalogue item assigned to ``kinds`` in ``regions`` (prefixes)."""
    session.add(
        CatalogueItem(
            code=code, base_code=f"B{code}", name=f"事项 {code}", level=4, handling_type="instant",
            promised_days=None, department="局", outlet_kinds=list(kinds),
            region_codes=list(regions), handling_mode="direct", target="upstream",
            imported_at=at,
        )
    )  # fmt: skip


def dead_letter(session: Session, outlet_id: str, *, at: datetime) -> DeadLetter:
    """A submission the upstream refused for good, waiting for an operator."""
    tx = f"dead-{next(_IDS)}"
    entry = InboxEntry(
        tx_id=tx, outlet_id=outlet_id, tx_kind="submission", body=submission(),
        idempotency_key=upstream_idempotency_key(outlet_id, tx), created_ts=0, received_at=at,
        state="dead", attempts=3, result_pending=False,
    )  # fmt: skip
    session.add(entry)
    session.flush()
    dead = DeadLetter(
        inbox_id=entry.id, tx_id=tx, outlet_id=outlet_id, tx_kind="submission", target="up",
        reason="rejected", detail=None, status_code=400, attempts=3, created_at=at,
    )  # fmt: skip
    session.add(dead)
    return dead


def certificate(
    session: Session, outlet_id: str, *, not_after: datetime, revoked: datetime | None = None
) -> None:
    """A client certificate of the outlet valid until ``not_after``."""
    serial = f"{next(_IDS):040x}"
    session.add(
        Certificate(
            serial=serial, outlet_id=outlet_id, fingerprint_sha256="0" * 64,
            issued_at=not_after - timedelta(days=365), not_after=not_after, revoked_at=revoked,
        )
    )  # fmt: skip
