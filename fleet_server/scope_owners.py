"""Which outlets a row named in a path belongs to, for the scope guard.

``fleet_server.api.scope.path_guard`` answers 404 to a scoped user for a row whose
outlets are not all in their scope. The api layer may not import the tables of the
layers above it, so the lookups live here and ``register`` hands them down (app.py).
A lookup returns ``None`` for a value that names no row: the route then answers its own
404 or 422, whoever asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.api.scope import OWNERS
from fleet_server.campaigns.tables import Campaign, CampaignOutlet
from fleet_server.health.tables import Alert
from fleet_server.models import DeadLetter, Rectification
from fleet_server.playbooks.tables import PlaybookHost, PlaybookRun

# Row ids are 32-bit in both databases; a larger or non-numeric value is no row.
_MAX_ID: Final = 2**31 - 1


def _row_id(value: str) -> int | None:
    return int(value) if value.isdigit() and int(value) <= _MAX_ID else None


def _alert(session: Session, value: str) -> Sequence[str] | None:
    row = session.get(Alert, row_id) if (row_id := _row_id(value)) is not None else None
    return None if row is None else [row.outlet_id]


def _dead_letter(session: Session, value: str) -> Sequence[str] | None:
    row = session.get(DeadLetter, row_id) if (row_id := _row_id(value)) is not None else None
    return None if row is None else [row.outlet_id]


def _rectification(session: Session, value: str) -> Sequence[str] | None:
    row = session.get(Rectification, row_id) if (row_id := _row_id(value)) is not None else None
    return None if row is None else [row.outlet_id]


def _campaign(session: Session, value: str) -> Sequence[str] | None:
    row_id = _row_id(value)
    if row_id is None or session.get(Campaign, row_id) is None:
        return None
    query = select(CampaignOutlet.outlet_id).where(CampaignOutlet.campaign_id == row_id)
    return session.scalars(query).all()


def _run(session: Session, value: str) -> Sequence[str] | None:
    row_id = _row_id(value)
    if row_id is None or session.get(PlaybookRun, row_id) is None:
        return None
    return session.scalars(
        select(PlaybookHost.outlet_id).where(PlaybookHost.run_id == row_id)
    ).all()


def register() -> None:
    """Hand the lookups to the guard (idempotent)."""
    OWNERS.update(
        alert_id=_alert,
        dead_letter_id=_dead_letter,
        rectification_id=_rectification,
        campaign_id=_campaign,
        run_id=_run,
    )
