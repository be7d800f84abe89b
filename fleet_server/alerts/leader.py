"""Exactly one alert-engine leader among the server processes sharing one database.

PostgreSQL: a session-level advisory lock on a dedicated connection that also runs the
evaluation; SQLite: an ``flock`` beside the database file. Takeover times and the known
limit: docs/fleet-health.md, "Alerts".
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)

# One fixed 64-bit key for the alert engine's advisory lock (crc32 of its name).
ADVISORY_KEY = zlib.crc32(b"govedge:alert-engine-leader")


class Leadership(Protocol):
    """``acquire()`` before each period; ``transaction()`` while leading; ``release()``."""

    @property
    def leading(self) -> bool:
        """True while this process is the leader (as of the last ``acquire``)."""

    def acquire(self) -> bool:
        """Keep or try to take the leadership now; True when this process leads."""

    def transaction(self) -> contextlib.AbstractContextManager[Session]:
        """A database transaction that can only commit while leading."""

    def release(self) -> None:
        """Give the leadership up (at shutdown)."""


class AlwaysLeader:
    """The only process there can be (in-memory SQLite, tests of one engine)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    @property
    def leading(self) -> bool:
        return True

    def acquire(self) -> bool:
        return True

    def transaction(self) -> contextlib.AbstractContextManager[Session]:
        return self._sessions.begin()

    def release(self) -> None:
        return None


class NeverLeader:
    """A process that must never lead: an API-only process (``--role api``). Its
    "evaluate now" answers as a standby's does, and it cannot take the leadership from
    the ingest processes, which run the engine (docs/deploy.md, "Roles")."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    @property
    def leading(self) -> bool:
        return False

    def acquire(self) -> bool:
        return False

    def transaction(self) -> contextlib.AbstractContextManager[Session]:
        raise RuntimeError("a process that never leads opens no leader transaction")

    def release(self) -> None:
        return None


class FileLockLeader:
    """SQLite: an exclusive non-blocking ``flock`` on ``path``, held while leading."""

    def __init__(self, sessions: sessionmaker[Session], path: Path) -> None:
        self._sessions = sessions
        self._path = path
        self._file: IO[bytes] | None = None

    @property
    def leading(self) -> bool:
        return self._file is not None

    def acquire(self) -> bool:
        if self._file is not None:
            return True
        handle = self._path.open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        logger.info("this process is the alert-engine leader (lock file %s)", self._path)
        return True

    def transaction(self) -> contextlib.AbstractContextManager[Session]:
        return self._sessions.begin()

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


class AdvisoryLockLeader:
    """PostgreSQL: ``pg_try_advisory_lock(key)`` held on one dedicated connection."""

    def __init__(self, engine: Engine, *, key: int = ADVISORY_KEY, idle_timeout_s: float = 30.0):
        self._engine = engine
        self._key = key
        self._idle_timeout_ms = max(1000, int(idle_timeout_s * 1000))
        self._conn: Connection | None = None

    @property
    def leading(self) -> bool:
        return self._conn is not None

    def acquire(self) -> bool:
        if self._conn is not None:
            try:
                # Still our session, and the lock still ours (the server may have ended
                # the session, e.g. after idle_session_timeout while we were stopped).
                held = self._conn.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND pid = pg_backend_pid() AND granted "
                        "AND ((classid::bigint << 32) | objid::bigint) = :key"
                    ),
                    {"key": self._key},
                ).scalar_one()
                self._conn.commit()
            except SQLAlchemyError:
                logger.warning("lost the alert-engine leader connection; standing by")
                self._drop()
                return self._try()
            if held:
                return True
            logger.warning("the alert-engine leader lock is gone; standing by")
            self._drop()
        return self._try()

    def _try(self) -> bool:
        try:
            conn = self._engine.connect()
        except SQLAlchemyError:
            return False
        try:
            # A leader stopped mid-evaluation is idle *in* a transaction; between
            # evaluations it is idle outside one: both end its session (and lock).
            conn.execute(text(f"SET idle_in_transaction_session_timeout = {self._idle_timeout_ms}"))
            if (conn.dialect.server_version_info or (0,)) >= (14,):
                conn.execute(text(f"SET idle_session_timeout = {self._idle_timeout_ms}"))
            conn.execute(text("SET tcp_keepalives_idle = 10"))
            conn.execute(text("SET tcp_keepalives_interval = 5"))
            conn.execute(text("SET tcp_keepalives_count = 3"))
            got = bool(
                conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}).scalar()
            )
            conn.commit()
        except SQLAlchemyError:
            logger.exception("could not ask for the alert-engine leader lock")
            conn.invalidate()
            conn.close()
            return False
        if not got:
            conn.close()
            return False
        self._conn = conn
        logger.info("this process is the alert-engine leader (pid %d)", os.getpid())
        return True

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        if self._conn is None:
            raise RuntimeError("not the alert-engine leader")
        session = Session(bind=self._conn, expire_on_commit=False)
        try:
            with session.begin():
                yield session
        except SQLAlchemyError:
            # The connection may be broken (and the lock with it): re-check next period.
            self._drop()
            raise
        finally:
            session.close()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(SQLAlchemyError):
            conn.invalidate()  # never back to the pool: the lock must die with it
        with contextlib.suppress(SQLAlchemyError):
            conn.close()

    def release(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
            conn.commit()
        except SQLAlchemyError:
            pass
        self._drop()


def leadership_for(
    engine: Engine, sessions: sessionmaker[Session], *, interval_s: float
) -> Leadership:
    """The leadership scheme for the database ``engine`` points at.

    On PostgreSQL a stopped leader loses the lock after ``max(30, 3 * interval_s)`` s
    (an idle leader runs a query every ``interval_s``, so it never hits that).
    """
    url = engine.url
    backend = url.get_backend_name()
    if backend == "postgresql":
        return AdvisoryLockLeader(engine, idle_timeout_s=max(30.0, 3 * interval_s))
    if backend == "sqlite" and url.database not in (None, "", ":memory:"):
        return FileLockLeader(sessions, Path(f"{url.database}.alert-leader.lock"))
    return AlwaysLeader(sessions)
