"""Update reports (``up/updstatus``) from the ingest: checked, then applied forward only.

``take`` keeps each accepted ``UpdateStatus`` of a batch in memory; ``flush`` applies
them in one transaction. A report is counted and ignored (``CampaignStats.ignored``)
when it names no campaign (``no_campaign``: a technician's install), a campaign the
outlet is not in (``unknown_campaign``), an older campaign than the outlet's latest
(``stale_campaign``), another release than the one offered (``wrong_release``), or a
state that is not a step forward (``not_forward``: a late ``downloading`` after
``healthy``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.campaigns.engine import same_version
from fleet_server.campaigns.states import FAILED, move
from fleet_server.campaigns.stats import CampaignStats
from fleet_server.campaigns.tables import CampaignOutlet
from govedge_wire import UpdateStatus

logger = logging.getLogger(__name__)


class UpdateReports:
    """The ingest's hook for ``UpdateStatus`` (``take`` per message, ``flush`` per batch)."""

    def __init__(self, *, stats: CampaignStats, on_change: Callable[[], None] | None = None):
        self._stats = stats
        self._on_change = on_change
        self._lock = threading.Lock()
        self._pending: list[tuple[UpdateStatus, datetime]] = []

    def take(self, message: UpdateStatus, *, received_at: datetime) -> None:
        """Keep one report for the batch's flush."""
        with self._lock:
            self._pending.append((message, received_at))

    def flush(self, sessions: sessionmaker[Session]) -> None:
        """Apply the batch's reports; never raises (a database error drops them, counted)."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            with sessions.begin() as session:
                changed = sum(self._apply(session, m, at) for m, at in pending)
        except SQLAlchemyError:
            self._stats.ignored("database_error")
            logger.exception("could not store %d update reports", len(pending))
            return
        self._stats.count("reports", len(pending))
        if changed and self._on_change is not None:
            self._on_change()

    def _apply(self, session: Session, message: UpdateStatus, received_at: datetime) -> bool:
        if message.campaign_id is None:
            self._stats.ignored("no_campaign")
            return False
        row = session.get(CampaignOutlet, (message.campaign_id, message.outlet_id))
        if row is None:
            self._stats.ignored("unknown_campaign")
            return False
        latest = session.scalar(
            select(func.max(CampaignOutlet.campaign_id)).where(
                CampaignOutlet.outlet_id == message.outlet_id
            )
        )
        if latest != message.campaign_id:
            self._stats.ignored("stale_campaign")
            return False
        if not same_version(message.version, row.release):
            self._stats.ignored("wrong_release")
            return False
        row.last_report_at = received_at
        state = str(message.state)
        moved = move(session, row, state, at=received_at, reason=message.reason,
                     detail=message.detail)  # fmt: skip
        if not moved:
            self._stats.ignored("not_forward")
            return False
        if state in FAILED:
            logger.warning("outlet %s %s in campaign %d: %s", row.outlet_id, state,
                           row.campaign_id, message.reason or "-")  # fmt: skip
        return True
