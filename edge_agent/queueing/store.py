"""SQLite persistence of the queue: one file in the data dir, WAL, one transaction per op.

The engine's rules run inside ``QueueStore.transaction`` in a worker thread, so the state
change and its event record are written together or not at all, and a restart (or a
power cut) loses nothing that was acknowledged.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edge_agent.queueing.errors import QueueStoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (
    day TEXT NOT NULL, business_type TEXT NOT NULL, last INTEGER NOT NULL,
    PRIMARY KEY (day, business_type)
);
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    day TEXT NOT NULL, number TEXT NOT NULL, business_type TEXT NOT NULL,
    status TEXT NOT NULL, window TEXT, target_window TEXT,
    issued_at TEXT NOT NULL, updated_at TEXT NOT NULL, calls INTEGER NOT NULL DEFAULT 0,
    priority INTEGER NOT NULL DEFAULT 0,
    UNIQUE (day, number)
);
CREATE INDEX IF NOT EXISTS tickets_waiting ON tickets (day, status, business_type);
CREATE TABLE IF NOT EXISTS windows (
    window TEXT PRIMARY KEY, business_types TEXT NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0, current_ticket INTEGER REFERENCES tickets (id)
);
CREATE TABLE IF NOT EXISTS appointments (
    reference TEXT PRIMARY KEY, day TEXT NOT NULL, business_type TEXT NOT NULL,
    priority INTEGER NOT NULL, slot TEXT NOT NULL DEFAULT '',
    checked_in_at TEXT, ticket TEXT
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, body TEXT NOT NULL
);
"""


def _add_priority_column(conn: sqlite3.Connection) -> None:
    """A queue database from before appointments lacks ``tickets.priority``: add it (0)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(tickets)")}
    if "priority" not in columns:
        conn.execute("ALTER TABLE tickets ADD COLUMN priority INTEGER NOT NULL DEFAULT 0")


class QueueStore:
    """The queue database; blocking, so the engine calls it through ``asyncio.to_thread``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(SCHEMA)
            _add_priority_column(self._conn)
        except (sqlite3.Error, OSError) as exc:
            raise QueueStoreError(f"cannot open the queue database {path}: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``, or roll back on any error."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise QueueStoreError(f"queue database busy or broken: {exc}") from exc
            try:
                yield self._conn
            except sqlite3.Error as exc:
                self._conn.execute("ROLLBACK")
                raise QueueStoreError(f"queue database error: {exc}") from exc
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._conn.execute("ROLLBACK")
                raise QueueStoreError(f"queue database commit failed: {exc}") from exc

    def add_event(self, conn: sqlite3.Connection, event: dict[str, Any]) -> None:
        """Store an event record in the current transaction."""
        conn.execute(
            "INSERT INTO events (id, body) VALUES (?, ?)",
            (event["id"], json.dumps(event, ensure_ascii=False)),
        )

    def events_after(self, seq: int, *, limit: int = 500) -> list[tuple[int, dict[str, Any]]]:
        """Events with a sequence number above ``seq``, oldest first."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
            ).fetchall()
        return [(int(r["seq"]), json.loads(r["body"])) for r in rows]

    def close(self) -> None:
        """Close the connection (checkpointing the WAL)."""
        with self._lock:
            self._conn.close()
