"""The local API's own small, durable state: ``DATA_DIR/local_api.sqlite3``.

Two tables, both without personal data:

- ``tx_status``: the last known stage of each transaction the agent accepted or heard
  about (``waiting`` / ``acked`` / ``delivered`` / ``rejected``, the upstream case
  number, the rejection reason), so ``GET /v1/transactions/{tx_id}`` still answers
  after an agent restart, when an acked entry is long gone from the outbox.
- ``idempotency``: ``Idempotency-Key`` → SHA-256 of the canonical request body, so a
  key reused with a different body is refused instead of silently answering with the
  first transaction.

Rows older than ``ttl_s`` (default 30 days) or beyond ``max_rows`` per table are pruned
at open and every ``prune_every`` writes. WAL with ``synchronous=NORMAL``: this is a
cache of facts the outbox and the fleet server hold durably, not the source of truth.
All calls block; the async wrappers run them with ``asyncio.to_thread``. ``sqlite3``
errors become ``LocalStateError`` here.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

__all__ = ["STATE_FILE", "LocalStateError", "LocalStateFull", "LocalStateStore", "StoredStatus"]

STATE_FILE: Final = "local_api.sqlite3"
R = TypeVar("R")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS tx_status (
    tx_id TEXT PRIMARY KEY, status TEXT NOT NULL, tx_kind TEXT,
    case_number TEXT, reason TEXT, updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tx_status_updated ON tx_status (updated);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, body_sha256 TEXT NOT NULL, created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency (created);
CREATE TABLE IF NOT EXISTS default_ratings (
    tx_id TEXT PRIMARY KEY, case_number TEXT, assess_number INTEGER NOT NULL,
    due REAL NOT NULL, body TEXT NOT NULL
);
"""


class LocalStateError(Exception):
    """The local API's state database cannot be opened, read or written."""


class LocalStateFull(LocalStateError):
    """The disk is full: the write was not made (SQLite rolled it back)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredStatus:
    """One row of ``tx_status``."""

    tx_id: str
    status: str
    tx_kind: str | None = None
    case_number: str | None = None
    reason: str | None = None
    updated: float = 0.0


class LocalStateStore:
    """The state database; use as an async context manager (opens in a worker thread)."""

    def __init__(
        self,
        path: Path,
        *,
        ttl_s: float = 30 * 86400.0,
        max_rows: int = 50_000,
        prune_every: int = 500,
        timeout_s: float = 5.0,
    ) -> None:
        self.path = path
        self.ttl_s = ttl_s
        self.max_rows = max_rows
        self.prune_every = prune_every
        self.timeout_s = timeout_s
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._writes = 0

    async def __aenter__(self) -> LocalStateStore:
        await asyncio.to_thread(self._open)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self._close)

    # ---- async API -----------------------------------------------------------------

    async def load_status(self, tx_id: str) -> StoredStatus | None:
        """The stored stage of ``tx_id``, or None."""
        return await self._call(lambda conn: _load_status(conn, tx_id))

    async def save_status(self, status: StoredStatus) -> None:
        """Insert or replace the row of ``status.tx_id``."""
        await self._call(lambda conn: _save_status(conn, status), write=True)

    async def update_statuses(
        self, changes: Sequence[tuple[str, Callable[[StoredStatus | None], StoredStatus | None]]]
    ) -> None:
        """For each ``(tx_id, change)`` in order, store what ``change`` makes of the row.

        ``change`` gets the current row (or None) and returns the new one (None: keep
        it). All in one transaction and one trip to the database thread: the tracker
        does this for every ack, thousands a second while a backlog drains (issue 17).
        """

        def work(conn: sqlite3.Connection) -> None:
            # One read of every row concerned and one write of every new row, not two
            # statements per change: the tracker's thread competes with the event loop
            # for the GIL at each statement (docs/performance.md, "Outbox drain").
            rows = _load_statuses(conn, list({tx_id: None for tx_id, _ in changes}))
            changed: dict[str, StoredStatus] = {}
            for tx_id, change in changes:
                new = change(rows.get(tx_id))
                if new is not None:
                    rows[tx_id] = changed[tx_id] = new
            _save_statuses(conn, changed.values())

        await self._call(work, write=True)

    async def bind_key(self, key: str, *, body_sha256: str) -> tuple[str, bool]:
        """Bind ``key`` to ``body_sha256`` unless already bound: ``(bound digest, new)``.

        The caller compares the bound digest with its own: different = the key was first
        used with another body. ``new`` is True when this call made the binding.
        """
        return await self._call(lambda conn: _bind_key(conn, key, body_sha256), write=True)

    async def key_digest(self, key: str) -> str | None:
        """The digest ``key`` is bound to, or None."""
        return await self._call(lambda conn: _key_digest(conn, key))

    async def unbind_key(self, key: str, *, body_sha256: str) -> None:
        """Forget ``key`` if it is still bound to ``body_sha256`` (nothing was accepted)."""
        await self._call(
            lambda conn: conn.execute(
                "DELETE FROM idempotency WHERE key = ? AND body_sha256 = ?", (key, body_sha256)
            ),
            write=True,
        )

    # ---- default ratings waiting for their time (default_ratings.py) -------------------

    async def add_default(
        self, tx_id: str, *, case_number: str | None, assess_number: int, due: float, body: str
    ) -> None:
        """Keep one default rating until ``due`` (a second add of ``tx_id`` is ignored)."""
        await self._call(
            lambda conn: conn.execute(
                "INSERT OR IGNORE INTO default_ratings VALUES (?, ?, ?, ?, ?)",
                (tx_id, case_number, assess_number, due, body),
            ),
            write=True,
        )

    async def due_defaults(self, now: float) -> list[tuple[str, str]]:
        """``(tx_id, body)`` of the default ratings due at ``now``, oldest first."""
        return await self._call(
            lambda conn: conn.execute(
                "SELECT tx_id, body FROM default_ratings WHERE due <= ? ORDER BY due", (now,)
            ).fetchall()
        )

    async def next_default_due(self) -> float | None:
        """When the next default rating is due (None: none waits)."""
        row = await self._call(
            lambda conn: conn.execute("SELECT min(due) FROM default_ratings").fetchone()
        )
        return None if row is None or row[0] is None else float(row[0])

    async def drop_defaults(
        self, *, tx_id: str | None = None, case: tuple[str, int] | None = None
    ) -> int:
        """Forget a recorded default, or those of a case the citizen rated after all."""
        args: tuple[str | int, ...]
        if tx_id is not None:
            sql, args = "DELETE FROM default_ratings WHERE tx_id = ?", (tx_id,)
        elif case is not None:
            sql = "DELETE FROM default_ratings WHERE case_number = ? AND assess_number = ?"
            args = case
        else:
            return 0
        return await self._call(lambda conn: conn.execute(sql, args).rowcount, write=True)

    # ---- blocking internals ----------------------------------------------------------

    async def _call(self, work: Callable[[sqlite3.Connection], R], *, write: bool = False) -> R:
        return await asyncio.to_thread(self._run, work, write)

    def _run(self, work: Callable[[sqlite3.Connection], R], write: bool) -> R:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise LocalStateError("the local API state database is not open")
            try:
                with conn:  # one transaction: commit, or roll back on error
                    result = work(conn)
                if write:
                    self._writes += 1
                    if self._writes % self.prune_every == 0:
                        self._prune(conn)
            except sqlite3.Error as exc:
                if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL:
                    raise LocalStateFull("the agent's disk is full") from exc
                raise LocalStateError(f"local API state database error: {exc}") from exc
            return result

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            self._prune(conn)
        except (sqlite3.Error, OSError) as exc:
            raise LocalStateError(f"cannot open {self.path}: {exc}") from exc
        self.path.chmod(0o600)
        with self._lock:
            self._conn = conn

    def _close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _prune(self, conn: sqlite3.Connection) -> None:
        limit = time.time() - self.ttl_s
        with conn:
            conn.execute("DELETE FROM tx_status WHERE updated < ?", (limit,))
            conn.execute("DELETE FROM idempotency WHERE created < ?", (limit,))
            conn.execute(
                "DELETE FROM tx_status WHERE tx_id IN (SELECT tx_id FROM tx_status "
                "ORDER BY updated DESC LIMIT -1 OFFSET ?)",
                (self.max_rows,),
            )
            conn.execute(
                "DELETE FROM idempotency WHERE key IN (SELECT key FROM idempotency "
                "ORDER BY created DESC LIMIT -1 OFFSET ?)",
                (self.max_rows,),
            )


def _load_status(conn: sqlite3.Connection, tx_id: str) -> StoredStatus | None:
    row = conn.execute(
        "SELECT tx_id, status, tx_kind, case_number, reason, updated FROM tx_status "
        "WHERE tx_id = ?",
        (tx_id,),
    ).fetchone()
    return None if row is None else _stored(row)


def _load_statuses(conn: sqlite3.Connection, tx_ids: Sequence[str]) -> dict[str, StoredStatus]:
    rows = conn.execute(
        "SELECT tx_id, status, tx_kind, case_number, reason, updated FROM tx_status "
        "WHERE tx_id IN (SELECT value FROM json_each(?))",
        (json.dumps(tx_ids),),
    ).fetchall()
    return {row[0]: _stored(row) for row in rows}


def _stored(row: Sequence[Any]) -> StoredStatus:
    """A ``tx_status`` row read as ``tx_id, status, tx_kind, case_number, reason, updated``."""
    return StoredStatus(
        tx_id=row[0],
        status=row[1],
        tx_kind=row[2],
        case_number=row[3],
        reason=row[4],
        updated=float(row[5]),
    )


# Every row of a burst in one statement (one JSON array of rows): one step of SQLite,
# where executemany took the GIL back from the event loop once per row.
_SAVE_STATUSES: Final = (
    "INSERT OR REPLACE INTO tx_status (tx_id, status, tx_kind, case_number, reason, updated)"
    " SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),"
    " json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'),"
    " json_extract(value, '$[5]') FROM json_each(?)"
)


def _save_status(conn: sqlite3.Connection, status: StoredStatus) -> None:
    _save_statuses(conn, [status])


def _save_statuses(conn: sqlite3.Connection, statuses: Iterable[StoredStatus]) -> None:
    now = time.time()
    rows = [
        (s.tx_id, s.status, s.tx_kind, s.case_number, s.reason, s.updated or now) for s in statuses
    ]
    if rows:
        conn.execute(_SAVE_STATUSES, (json.dumps(rows),))


def _bind_key(conn: sqlite3.Connection, key: str, digest: str) -> tuple[str, bool]:
    inserted = conn.execute(
        "INSERT OR IGNORE INTO idempotency (key, body_sha256, created) VALUES (?, ?, ?)",
        (key, digest, time.time()),
    ).rowcount
    bound = _key_digest(conn, key)
    return (bound if bound is not None else digest), inserted == 1


def _key_digest(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT body_sha256 FROM idempotency WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])
