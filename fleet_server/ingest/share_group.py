"""Several ingest workers in one MQTT share group: heartbeats and who marks the fleet stale.

Each worker keeps a heartbeat row in ``ingest_workers``; only the last live, connected
worker marks the fleet ``stale`` or publishes the offline server state. The rules are in
docs/operations.md, "Several ingest workers".
"""

from __future__ import annotations

import logging
import os
import time
import uuid
import zlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.ingest.presence import PresenceTracker
from fleet_server.ingest.registry import load_presence
from fleet_server.ingest.stats import IngestStats, RateLimitedLog
from fleet_server.models import Agent, IngestWorker
from fleet_server.settings import Settings

logger = logging.getLogger(__name__)
_START_POLL_S = 0.2

# One fixed key for the transaction-level advisory lock of presence decisions.
FLEET_LOCK_KEY = zlib.crc32(b"govedge:ingest-workers")
# Rows of workers gone this long are deleted by any worker's heartbeat.
FORGET_AFTER = timedelta(days=1)


def fleet_lock(session: Session) -> None:
    """Serialise presence decisions of all workers until the end of the transaction."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": FLEET_LOCK_KEY})


def beat(
    session: Session, *, worker_id: str, server_id: str, connected: bool, now: datetime
) -> None:
    """Write this worker's heartbeat row (insert it on the first beat)."""
    updated = session.execute(
        update(IngestWorker)
        .where(IngestWorker.worker_id == worker_id)
        .values(connected=connected, beat_at=now)
    )
    if getattr(updated, "rowcount", 0) == 0:
        session.add(
            IngestWorker(
                worker_id=worker_id,
                server_id=server_id,
                connected=connected,
                started_at=now,
                beat_at=now,
            )
        )
        session.flush()
    session.execute(delete(IngestWorker).where(IngestWorker.beat_at < now - FORGET_AFTER))


def live_connected(
    session: Session,
    *,
    now: datetime,
    lease_s: float,
    exclude: str | None = None,
    since: datetime | None = None,
) -> list[str]:
    """Ids of the workers whose row says connected and is younger than the lease.

    ``since``: only rows written after it (a starting worker trusts a peer only once
    the peer has beaten after the start: a row of a worker SIGKILLed a moment ago is
    still inside its lease).
    """
    query = select(IngestWorker.worker_id).where(
        IngestWorker.connected.is_(True),
        IngestWorker.beat_at >= now - timedelta(seconds=lease_s),
    )
    if since is not None:
        query = query.where(IngestWorker.beat_at > since)
    if exclude is not None:
        query = query.where(IngestWorker.worker_id != exclude)
    return list(session.scalars(query.order_by(IngestWorker.worker_id)))


def mark_fleet_stale(session: Session, *, at: datetime) -> int:
    """Every outlet stored ``online`` becomes ``stale`` at ``at``; returns how many."""
    result = session.execute(
        update(Agent).where(Agent.state == "online").values(state="stale", state_since=at)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def forget(session: Session, worker_id: str) -> None:
    """Delete this worker's row (clean stop)."""
    session.execute(delete(IngestWorker).where(IngestWorker.worker_id == worker_id))


def count_workers(session: Session) -> int:
    """How many worker rows exist (for tests and diagnostics)."""
    return int(session.scalar(select(func.count()).select_from(IngestWorker)) or 0)


class ShareGroup:
    """This worker's part in the share group; run from the ingest's worker thread."""

    def __init__(
        self,
        settings: Settings,
        *,
        sessions: sessionmaker[Session],
        stats: IngestStats,
        tracker: PresenceTracker,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._stats = stats
        self._tracker = tracker
        self._log = RateLimitedLog(logger)
        self.worker_id = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        # The broker connection as the worker thread has processed it so far.
        self.connected = False
        self.stopping = False
        self.next_beat = 0.0

    def start(self) -> None:
        """Register this worker; mark the fleet stale only if no other worker holds it.

        A peer counts once it has beaten after this registration (its row may be the
        last beat of a worker SIGKILLed a moment ago): wait for that while some peer's
        row is inside its lease.
        """
        lease = self._settings.worker_lease_s
        started = datetime.now(UTC)
        with self._sessions.begin() as session:
            self._beat(session, connected=False, now=started)
        deadline = time.monotonic() + lease
        while True:
            now = datetime.now(UTC)
            with self._sessions.begin() as session:
                fleet_lock(session)
                known = self._peers(session, now=now)
                peers = self._peers(session, now=now, since=started)
                if peers or not known or time.monotonic() >= deadline:
                    stale = 0 if peers else mark_fleet_stale(session, at=now)
                    self._tracker.load(load_presence(session))
                    break
            time.sleep(min(_START_POLL_S, self._settings.worker_heartbeat_s))
        self.next_beat = time.monotonic() + self._settings.worker_heartbeat_s
        if peers:
            logger.info(
                "worker %s joins %d connected workers: presence kept as stored",
                self.worker_id,
                len(peers),
            )
        else:
            logger.info(
                "worker %s: no other worker connected; %d online outlets stale until heard",
                self.worker_id,
                stale,
            )

    def _beat(self, session: Session, *, connected: bool, now: datetime) -> None:
        """Take the fleet lock and write this worker's heartbeat row."""
        fleet_lock(session)
        beat(
            session,
            worker_id=self.worker_id,
            server_id=self._settings.server_id,
            connected=connected,
            now=now,
        )

    def _peers(
        self, session: Session, *, now: datetime, since: datetime | None = None
    ) -> list[str]:
        """The other workers that are live and connected (see ``live_connected``)."""
        return live_connected(
            session,
            now=now,
            lease_s=self._settings.worker_lease_s,
            exclude=self.worker_id,
            since=since,
        )

    def heartbeat(self) -> None:
        """Write this worker's row; if no worker at all holds the broker, sweep.

        Runs between batches, so ``connected`` is what the worker thread has processed;
        a stopping worker says it is not connected.
        """
        self.next_beat = time.monotonic() + self._settings.worker_heartbeat_s
        connected = self.connected and not self.stopping
        now = datetime.now(UTC)
        try:
            with self._sessions.begin() as session:
                self._beat(session, connected=connected, now=now)
                swept = 0
                if not connected and not live_connected(
                    session, now=now, lease_s=self._settings.worker_lease_s
                ):
                    swept = mark_fleet_stale(session, at=now)
        except SQLAlchemyError as exc:
            self._stats.db_error()
            self._log.exception("heartbeat", "could not write the worker heartbeat", exc=exc)
            return
        if swept:
            self._tracker.mark_all_stale(at=now, dirty=False)
            self._stats.noted("fleet_swept_stale")
            logger.info("no ingest worker holds the broker: %d online outlets now stale", swept)

    def broker_lost(self, at: datetime) -> None:
        """Say this worker is not connected; the last connected worker marks the fleet."""
        self.connected = False
        self.next_beat = time.monotonic() + self._settings.worker_heartbeat_s
        try:
            with self._sessions.begin() as session:
                self._beat(session, connected=False, now=at)
                peers = self._peers(session, now=at)
                stale = 0 if peers else mark_fleet_stale(session, at=at)
        except SQLAlchemyError as exc:
            # The next heartbeat (a sweep) decides again once the database answers.
            self._stats.db_error()
            self._log.exception("broker_lost", "could not record the broker loss", exc=exc)
            return
        if peers:
            self._stats.noted("broker_lost_peers_connected")
            logger.info(
                "broker connection lost; %d other workers still connected: presence kept",
                len(peers),
            )
            return
        self._tracker.mark_all_stale(at=at, dirty=False)
        logger.info("broker connection lost, no other worker connected: %d outlets stale", stale)

    def last_to_leave(self) -> bool:
        """Clean stop: True when this worker must publish the offline server state.

        This worker's row says not connected from here on, so of two workers stopping
        together the second publishes it.
        """
        now = datetime.now(UTC)
        try:
            with self._sessions.begin() as session:
                self._beat(session, connected=False, now=now)
                peers = self._peers(session, now=now)
        except SQLAlchemyError:
            logger.warning("could not read the other workers; publishing the offline state")
            return True
        if peers:
            logger.info("%d other workers connected: server state stays online", len(peers))
        return not peers

    def leave(self) -> None:
        """Remove this worker's row (clean stop)."""
        try:
            with self._sessions.begin() as session:
                forget(session, self.worker_id)
        except SQLAlchemyError:
            logger.warning("could not remove worker %s from ingest_workers", self.worker_id)
