"""Presence between the tracker in memory and the ``agents`` rows.

Each batch writes the changed outlets in one transaction; a batch the database refuses
is retried one outlet per transaction, so one poison record cannot block the rest. In
a share group the stored rows are the truth: they are read for a session this worker
has not seen born, and locked and merged in before a write of a state, session or
birth; telemetry's presence is one statement with the same rules (docs/operations.md).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.ingest.presence import OutletRecord, PresenceTracker
from fleet_server.ingest.registry import load_presence, save_presence, save_seen_shared
from fleet_server.ingest.stats import IngestStats, RateLimitedLog

logger = logging.getLogger(__name__)


class PresenceStore:
    """Writes the tracker's dirty records; reads stored rows in shared mode."""

    def __init__(
        self, *, sessions: sessionmaker[Session], stats: IngestStats, tracker: PresenceTracker
    ) -> None:
        self._sessions = sessions
        self._stats = stats
        self._tracker = tracker
        self._log = RateLimitedLog(logger)
        bind = sessions.kw.get("bind")
        # Shared mode on PostgreSQL: telemetry's presence in one statement, no locked read.
        self._fast_seen = (
            tracker.shared and getattr(getattr(bind, "dialect", None), "name", None) == "postgresql"
        )

    def load(self) -> None:
        """Start the tracker from every stored row."""
        with self._sessions.begin() as session:
            self._tracker.load(load_presence(session))

    def reload(self, outlet_id: str) -> None:
        """Shared mode: adopt the stored row of ``outlet_id`` if its session is newer."""
        self.reload_many([outlet_id])

    def reload_many(self, outlet_ids: list[str]) -> None:
        """Shared mode: adopt the stored rows of ``outlet_ids`` whose session is newer."""
        try:
            with self._sessions.begin() as session:
                rows = load_presence(session, outlet_ids)
        except SQLAlchemyError as exc:
            self._stats.db_error()
            self._log.exception(
                "db_refresh", "could not read %d outlets' presence", len(outlet_ids), exc=exc
            )
            rows = []
        for row in rows:
            if self._tracker.adopt(row):
                self._stats.noted("presence_reloaded")

    def flush(self) -> None:
        """Write every dirty record; on failure keep them dirty for the next batch."""
        records = self._tracker.dirty()
        if not records:
            return
        now = datetime.now(UTC)
        if self._fast_seen:
            rest = self._flush_seen(records)
            if rest is None:  # the database is away: every record stays dirty
                return
            if not rest:
                self._stats.batch_committed()
                return
            records = rest
        try:
            with self._sessions.begin() as session:
                records = self._save(session, records, now=now)
        except OperationalError as exc:
            # The database is down, locked or unreachable: try the whole set again later.
            self._stats.db_error()
            self._log.exception(
                "db_down", "could not write %d presence records", len(records), exc=exc
            )
            return
        except SQLAlchemyError as exc:
            self._stats.db_error()
            self._log.exception("db_error", "a presence batch failed; writing one by one", exc=exc)
            self._flush_each(records, now=now)
            return
        self._tracker.mark_stored([record.outlet_id for record in records])
        self._stats.batch_committed()

    def _flush_seen(self, records: list[OutletRecord]) -> list[OutletRecord] | None:
        """Write the records that moved only last_seq/last_seen/metrics in one short
        transaction; returns the rest, for the locked merge (``_save``), or None when
        the database is unreachable (nothing written, all stay dirty).

        The locked merge reads and holds every row of the batch for several round trips;
        in a share group the broker deals each outlet's messages to every worker, so the
        workers would queue on each other's locks (docs/performance.md).
        """
        seen = [r for r in records if r.stored and not r.full_dirty and not r.state_dirty]
        if not seen:
            return records
        try:
            with self._sessions.begin() as session:
                written = save_seen_shared(session, seen)
        except OperationalError as exc:
            self._stats.db_error()
            self._log.exception(
                "db_down", "could not write %d presence records", len(seen), exc=exc
            )
            return None
        except SQLAlchemyError as exc:
            self._stats.db_error()
            self._log.exception("db_error", "a presence batch failed; merging instead", exc=exc)
            return records
        self._tracker.mark_stored(sorted(written))
        return [r for r in records if r.outlet_id not in written]

    def _flush_each(self, records: list[OutletRecord], *, now: datetime) -> None:
        for record in records:
            try:
                with self._sessions.begin() as session:
                    self._save(session, [record], now=now)
            except OperationalError:
                return
            except SQLAlchemyError as exc:
                self._stats.db_error()
                self._log.exception(
                    "db_record", "dropped presence of outlet %s", record.outlet_id, exc=exc
                )
                self._tracker.discard_dirty(record.outlet_id)
            else:
                self._tracker.mark_stored([record.outlet_id])

    def _save(
        self, session: Session, records: list[OutletRecord], *, now: datetime
    ) -> list[OutletRecord]:
        """Write ``records``; in shared mode reconcile with the locked rows first.

        Returns the records written (in shared mode, those still dirty after the stored
        rows were merged in: an outlet whose stored session is newer is not written).
        """
        if self._tracker.shared:
            ids = [record.outlet_id for record in records]
            self._tracker.reconcile(load_presence(session, ids, lock=True))
            wanted = set(ids)
            records = [r for r in self._tracker.dirty() if r.outlet_id in wanted]
        save_presence(session, records, now=now, shared=self._tracker.shared)
        return records
