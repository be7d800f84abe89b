"""The outbox's SQLite file: schema, connection settings, and ``sqlite3.Error`` translation.

Why WAL, ``synchronous=FULL`` (NORMAL for bookkeeping) and ``locking_mode=EXCLUSIVE``:
docs/outbox.md, "Guarantees".
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, ParamSpec, Protocol, TypeVar, runtime_checkable

from edge_agent.outbox.errors import OutboxError, OutboxFull, StorageError

# Outbox schema changes are additive and versioned (docs/updates.md, "The outbox across
# an update"): ``PRAGMA user_version`` is the newest schema that wrote the file, and
# ``schema_info.min_reader`` the oldest schema that can still read it. A rolled-back
# agent thus opens the outbox its newer version upgraded, unless that version declared
# it unreadable by raising ``min_reader`` (which a breaking change must do).
SCHEMA_VERSION: Final = 1
MIN_READER: Final = 1
# One connection owns the file; a wait only helps a second opener, which must fail fast.
BUSY_TIMEOUT_MS: Final = 500

_DDL: Final = """
CREATE TABLE IF NOT EXISTS entries (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,  -- insertion order: FIFO per class
    tx_id          TEXT    NOT NULL UNIQUE,
    tx_kind        TEXT    NOT NULL,
    priority_class INTEGER NOT NULL,
    created_ms     INTEGER NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    next_due_ms    INTEGER NOT NULL,
    last_sent_ms   INTEGER,
    nonce          BLOB    NOT NULL,
    ciphertext     BLOB    NOT NULL,
    stored_bytes   INTEGER NOT NULL,
    material_id    TEXT,                               -- set on material chunks
    chunk_index    INTEGER
);
CREATE INDEX IF NOT EXISTS entries_order ON entries (priority_class, seq);
CREATE INDEX IF NOT EXISTS entries_material ON entries (material_id)
    WHERE material_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS materials (
    material_id  TEXT    PRIMARY KEY,
    sha256       TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    chunk_count  INTEGER NOT NULL,
    created_ms   INTEGER NOT NULL,
    state        TEXT    NOT NULL DEFAULT 'pending',   -- pending | delivered | rejected
    done_ms      INTEGER
);

CREATE TABLE IF NOT EXISTS tx_materials (
    tx_id        TEXT NOT NULL,
    material_id  TEXT NOT NULL REFERENCES materials (material_id),
    PRIMARY KEY (tx_id, material_id)
);
CREATE INDEX IF NOT EXISTS tx_materials_material ON tx_materials (material_id);

CREATE TABLE IF NOT EXISTS dead_letters (
    tx_id          TEXT    PRIMARY KEY,
    tx_kind        TEXT    NOT NULL,
    priority_class INTEGER NOT NULL,
    created_ms     INTEGER NOT NULL,
    attempts       INTEGER NOT NULL,
    dead_ms        INTEGER NOT NULL,
    cause          TEXT    NOT NULL,                   -- rejected | corrupt | material_rejected
    reason         TEXT,
    nonce          BLOB    NOT NULL,
    ciphertext     BLOB    NOT NULL,
    stored_bytes   INTEGER NOT NULL,
    material_id    TEXT,
    chunk_index    INTEGER
);

-- What a retried request gets back (an idempotency receipt), written in the same
-- transaction as its entry and kept after the entry was acked (``receipt_retention``).
CREATE TABLE IF NOT EXISTS receipts (
    tx_id          TEXT    PRIMARY KEY,                -- the client's Idempotency-Key
    tx_kind        TEXT    NOT NULL,
    request_sha256 TEXT    NOT NULL,                   -- the request the key is bound to
    created_ms     INTEGER NOT NULL,
    nonce          BLOB    NOT NULL,
    ciphertext     BLOB    NOT NULL                    -- sealed JSON answer
);
CREATE INDEX IF NOT EXISTS receipts_created ON receipts (created_ms);

CREATE TABLE IF NOT EXISTS meta (
    name   TEXT PRIMARY KEY,
    value  BLOB NOT NULL
);
"""

# Quota use kept up to date by triggers, so ``put`` checks the quota in O(1) instead of
# summing every pending entry (6.5 ms per put at 20,000 entries; docs/performance.md).
# 'all': ciphertext bytes of entries and dead letters; 'low': entries of class HEALTH (2)
# and TELEMETRY (3). Triggers cover every path that adds or removes rows (puts, chunks,
# acks, dead-letter moves, discards) and roll back with their transaction.
_USAGE_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS usage (bucket TEXT PRIMARY KEY, bytes INTEGER NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS usage_entry_added AFTER INSERT ON entries BEGIN"
    " UPDATE usage SET bytes = bytes + NEW.stored_bytes"
    " WHERE bucket = 'all' OR (bucket = 'low' AND NEW.priority_class >= 2); END",
    "CREATE TRIGGER IF NOT EXISTS usage_entry_removed AFTER DELETE ON entries BEGIN"
    " UPDATE usage SET bytes = bytes - OLD.stored_bytes"
    " WHERE bucket = 'all' OR (bucket = 'low' AND OLD.priority_class >= 2); END",
    # Never done by the outbox; a row edited by hand must not skew the figures either.
    "CREATE TRIGGER IF NOT EXISTS usage_entry_edited"
    " AFTER UPDATE OF stored_bytes, priority_class ON entries BEGIN"
    " UPDATE usage SET bytes = bytes - OLD.stored_bytes"
    " WHERE bucket = 'all' OR (bucket = 'low' AND OLD.priority_class >= 2);"
    " UPDATE usage SET bytes = bytes + NEW.stored_bytes"
    " WHERE bucket = 'all' OR (bucket = 'low' AND NEW.priority_class >= 2); END",
    "CREATE TRIGGER IF NOT EXISTS usage_dead_added AFTER INSERT ON dead_letters BEGIN"
    " UPDATE usage SET bytes = bytes + NEW.stored_bytes WHERE bucket = 'all'; END",
    "CREATE TRIGGER IF NOT EXISTS usage_dead_removed AFTER DELETE ON dead_letters BEGIN"
    " UPDATE usage SET bytes = bytes - OLD.stored_bytes WHERE bucket = 'all'; END",
)
_USAGE_INIT: Final = (
    "INSERT INTO usage (bucket, bytes) VALUES"
    " ('all', (SELECT COALESCE(SUM(stored_bytes), 0) FROM entries)"
    "       + (SELECT COALESCE(SUM(stored_bytes), 0) FROM dead_letters)),"
    " ('low', (SELECT COALESCE(SUM(stored_bytes), 0) FROM entries WHERE priority_class >= 2))"
)

_FULL_CODES: Final = {sqlite3.SQLITE_FULL}
_LOCKED_CODES: Final = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
_DAMAGED_CODES: Final = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


def translate(exc: sqlite3.Error, *, waiting: int = 0, quota_bytes: int = 0) -> OutboxError:
    """The most specific outbox error for a SQLite failure (messages hold no values)."""
    code = getattr(exc, "sqlite_errorcode", None)
    name = getattr(exc, "sqlite_errorname", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in _FULL_CODES:
        return OutboxFull(waiting=waiting, used_bytes=0, quota_bytes=quota_bytes, disk=True)
    if primary in _LOCKED_CODES:
        return StorageError(
            "outbox database is locked: is another edge agent using this data directory?",
            sqlite_error=name,
        )
    if primary in _DAMAGED_CODES:
        return StorageError(
            "outbox database file is damaged; keep it for recovery and restore from backup",
            sqlite_error=name,
        )
    return StorageError(f"outbox database error ({name or type(exc).__name__})", sqlite_error=name)


P = ParamSpec("P")
R = TypeVar("R")


@runtime_checkable
class _Quota(Protocol):
    """What ``translated`` reads from the store it wraps, to fill an ``OutboxFull``."""

    quota_bytes: int

    def waiting(self) -> int: ...


def translated(method: Callable[P, R]) -> Callable[P, R]:
    """Run ``method`` and turn any ``sqlite3.Error`` into the matching ``OutboxError``.

    ``method``'s first argument is the store (a method's ``self``, a function's store);
    on a full disk the error then says how many transactions are waiting.
    """

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            store = args[0] if args else None
            waiting, quota = 0, 0
            if isinstance(store, _Quota):
                quota = store.quota_bytes
                if _is_full(exc):
                    try:  # a read usually still works on a full disk; if not, say 0
                        waiting = store.waiting()
                    except sqlite3.Error:
                        waiting = 0
            raise translate(exc, waiting=waiting, quota_bytes=quota) from exc

    return wrapper


# Batched acks and marks need DELETE … RETURNING (3.35), UPDATE … FROM (3.33) and the
# JSON functions: refused at open, not found out by the first ack that fails.
MIN_SQLITE: Final = (3, 35, 0)


def _check_sqlite() -> None:
    probe = sqlite3.connect(":memory:")  # not the file: another process may hold its lock
    try:
        probe.execute("SELECT value FROM json_each('[1]')").fetchall()
    except sqlite3.Error:
        json_ok = False
    else:
        json_ok = True
    finally:
        probe.close()
    if sqlite3.sqlite_version_info < MIN_SQLITE or not json_ok:
        need = ".".join(map(str, MIN_SQLITE))
        raise StorageError(
            f"the outbox needs SQLite {need} or newer with its JSON functions; this Python "
            f"has SQLite {sqlite3.sqlite_version}{'' if json_ok else ' without JSON'}"
        )


def _is_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", 0)
    return isinstance(code, int) and code & 0xFF in _FULL_CODES


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating with mode 0600) and configure the database; create the schema."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    created = not path.exists()
    if created:
        # The WAL inherits the main file's mode, so the whole store stays 0600.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    try:
        _configure(conn)
    except BaseException:
        conn.close()
        raise
    if created:
        _fsync_dir(path.parent)
    return conn


def _configure(conn: sqlite3.Connection) -> None:
    _check_sqlite()
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA locking_mode = EXCLUSIVE")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StorageError(f"outbox database refused WAL mode (got {mode})")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    # Rows that INSERT OR REPLACE deletes fire the usage triggers only with this on.
    conn.execute("PRAGMA recursive_triggers = ON")
    with transaction(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            min_reader = _min_reader(conn)
            if min_reader > SCHEMA_VERSION:
                raise StorageError(
                    f"outbox database has schema {version}, readable from schema "
                    f"{min_reader} on; this agent knows {SCHEMA_VERSION}"
                )
        for statement in _DDL.split(";"):
            if statement.strip():
                conn.execute(statement)
        for statement in _USAGE_DDL:
            conn.execute(statement)
        if conn.execute("SELECT COUNT(*) FROM usage").fetchone()[0] == 0:
            conn.execute(_USAGE_INIT)  # once, for a database made before the triggers
        conn.execute(_SCHEMA_INFO_DDL)
        # Raised by a breaking schema, never lowered by an older agent.
        conn.execute(
            "INSERT INTO schema_info (id, min_reader) VALUES (1, ?) ON CONFLICT (id) "
            "DO UPDATE SET min_reader = max(min_reader, excluded.min_reader)",
            (MIN_READER,),
        )
        # Never lowered: a newer agent's additions stay declared after an older one ran.
        conn.execute(f"PRAGMA user_version = {max(version, SCHEMA_VERSION)}")


_SCHEMA_INFO_DDL: Final = """
CREATE TABLE IF NOT EXISTS schema_info (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    min_reader INTEGER NOT NULL
)"""


def _min_reader(conn: sqlite3.Connection) -> int:
    """The oldest schema that can read this file (1 when a schema predates the table)."""
    found = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_info'"
    ).fetchone()
    if found is None:
        return 1
    row = conn.execute("SELECT min_reader FROM schema_info WHERE id = 1").fetchone()
    return 1 if row is None else int(row[0])


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, *, durable: bool = True) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back on any exception.

    Explicit transactions on an autocommit connection, so a change of several rows (a
    material's chunks, a dead-letter move) is all or nothing. ``durable=False`` commits
    with ``synchronous=NORMAL`` (no fsync of its own; safe for bookkeeping only, see
    docs/outbox.md, "Guarantees") and restores ``FULL`` afterwards.
    """
    if not durable:
        conn.execute("PRAGMA synchronous = NORMAL")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        if not durable:
            conn.execute("PRAGMA synchronous = FULL")


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
