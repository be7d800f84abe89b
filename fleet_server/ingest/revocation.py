"""Refusing the traffic of revoked outlets (docs/security.md "Revocation").

Every message whose topic names an outlet revoked right now is refused, before it is
queued and again when the worker takes it, whatever client id it came with: counted
``revoked_outlet``, logged (rate-limited), nothing applied, stored or acknowledged. The
revoked set is re-read every ``revocation_refresh_s`` between batches; refusals are
written to ``revoked_traffic`` once per batch (the ``revoked_outlet_traffic`` alert).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.ingest.presence import PresenceTracker
from fleet_server.ingest.queue import outlet_of
from fleet_server.ingest.stats import IngestStats, RateLimitedLog
from fleet_server.models import RevokedTraffic
from fleet_server.security.revocation import RevokedOutlets

logger = logging.getLogger(__name__)


class RevocationGate:
    """The revoked set in memory and this batch's refusals."""

    def __init__(
        self, *, sessions: sessionmaker[Session], stats: IngestStats, refresh_s: float
    ) -> None:
        self._sessions = sessions
        self._stats = stats
        self._log = RateLimitedLog(logger)
        self.revoked = RevokedOutlets(refresh_s=refresh_s)
        self._lock = threading.Lock()
        self._refused: Counter[str] = Counter()
        self._seen: frozenset[str] = frozenset()

    def refuse(self, topic: str) -> bool:
        """True (counted, logged) when ``topic``'s outlet is revoked; any thread."""
        outlet_id = outlet_of(topic)
        if not self.revoked.contains(outlet_id):
            return False
        self._stats.rejected("revoked_outlet")
        with self._lock:
            self._refused[outlet_id] += 1
        self._log.warning(
            "revoked_outlet", "refused a message of revoked outlet %s (%s)", outlet_id, topic
        )
        return True

    def refresh(self) -> None:
        """Re-read the revoked set; on failure the last set read stays in force."""
        try:
            with self._sessions.begin() as session:
                self.revoked.refresh(session)
        except SQLAlchemyError as exc:
            self._stats.db_error()
            self._log.exception("revoked_refresh", "could not read revoked outlets", exc=exc)

    def offline_new(self, tracker: PresenceTracker) -> None:
        """Outlets revoked since the last look go offline (their will is refused too)."""
        ids = self.revoked.ids
        if ids is self._seen:
            return
        new, self._seen = ids - self._seen, ids
        now = datetime.now(UTC)
        for outlet_id in sorted(new):
            if tracker.mark_offline(outlet_id, at=now):
                self._stats.noted("revoked_offline")
                logger.info("outlet %s revoked: offline", outlet_id)

    def record(self) -> None:
        """Add this batch's refusals to ``revoked_traffic`` (one transaction)."""
        with self._lock:
            refused, self._refused = self._refused, Counter()
        if not refused:
            return
        now = datetime.now(UTC)
        try:
            with self._sessions.begin() as session:
                rows = {
                    row.outlet_id: row
                    for row in session.scalars(
                        select(RevokedTraffic).where(RevokedTraffic.outlet_id.in_(refused))
                    )
                }
                for outlet_id, count in refused.items():
                    row = rows.get(outlet_id)
                    if row is None:
                        session.add(
                            RevokedTraffic(
                                outlet_id=outlet_id, refused=count, first_at=now, last_at=now
                            )
                        )
                    else:
                        row.refused += count
                        row.last_at = now
        except SQLAlchemyError as exc:
            # Counted in the stats all the same; only the alert's facts miss this batch.
            self._stats.db_error()
            self._log.exception("revoked_record", "could not record revoked traffic", exc=exc)
