"""Live pages across server processes: the change number shared through the database.

Each process has its own ``LiveHub``; the pages it serves refetch when it moves. With
the API and the ingest in separate processes (or several API workers behind one
proxy), the process that stored a change is often not the one holding the operator's
stream. ``LiveShare`` raises the shared number in ``live_changes`` when this process
changed something, and moves the local hub when another process raised it: one small
statement per interval and process, and a page is at most about one interval late.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.health.live import LiveHub
from fleet_server.ingest.stats import RateLimitedLog
from fleet_server.models import LiveChange

logger = logging.getLogger(__name__)

_ROW = 1


class LiveShare:
    """Shares ``hub``'s changes with the other processes of the database, and theirs back."""

    def __init__(self, hub: LiveHub, sessions: sessionmaker[Session], *, interval_s: float) -> None:
        self._hub = hub
        self._sessions = sessions
        self._interval_s = interval_s
        self._seen: int | None = None  # the shared number as this process last read it
        self._unshared = False  # a local change whose write failed: try again
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = RateLimitedLog(logger)
        self.errors = 0

    def step(self) -> None:
        """Share this process's change if there was one; bring in the others'."""
        local = self._hub.take_local_change() or self._unshared
        try:
            with self._sessions.begin() as session:
                if local:
                    session.execute(
                        update(LiveChange)
                        .where(LiveChange.id == _ROW)
                        .values(version=LiveChange.version + 1)
                    )
                version = session.scalar(select(LiveChange.version).where(LiveChange.id == _ROW))
        except SQLAlchemyError as exc:
            self.errors += 1
            self._unshared = local
            self._log.exception("live_share", "could not share live page changes", exc=exc)
            return
        self._unshared = False
        if version is None:  # the row is made by the migration; never expected
            self.errors += 1
            self._log.warning("live_row", "the live_changes row is missing")
            return
        if self._seen is not None:
            expected = self._seen + 1 if local else self._seen
            if version != expected:  # another process changed something meanwhile
                self._hub.bump_from_peer()
        self._seen = version

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.step()

    def start(self) -> None:
        """Read the shared number now, then keep sharing in a thread of its own."""
        self.step()
        self._thread = threading.Thread(target=self._run, name="live-share", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (a last local change is shared first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.step()
