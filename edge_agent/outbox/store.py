"""The synchronous core of the outbox: accepting, sending and counting, in one worker thread.

``Outbox`` (``outbox.py``) owns one ``Store`` and calls it only from the worker thread
that created the connection (``check_same_thread`` holds it to that). Acks and dead
letters (``acks.py``), receipts (``receipts.py``) and materials (``materials.py``) are
functions over the same ``Store``. Every public call is one SQLite transaction, wrapped
in ``schema.translated`` so no ``sqlite3.Error`` leaves untranslated.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from edge_agent.outbox import receipts, schema
from edge_agent.outbox.codec import chunk_body, decode_body
from edge_agent.outbox.crypto import (
    KEY_CHECK_AAD,
    KEY_CHECK_PLAINTEXT,
    Sealer,
    Unsealable,
    entry_aad,
    load_key,
)
from edge_agent.outbox.errors import (
    CorruptEntry,
    InvalidEntry,
    KeyFileError,
    OutboxFull,
    UnknownMaterial,
)
from edge_agent.outbox.models import (
    DeadCause,
    DueEntry,
    PriorityClass,
    Receipt,
    StoredTransaction,
)

log = logging.getLogger(__name__)

# ``meta`` rows holding the cursor of a stream of records put in sequence (queue events).
_CURSOR_PREFIX: Final = "cursor:"
_SELECT_META: Final = (
    "SELECT seq, tx_id, tx_kind, priority_class, created_ms, attempts, next_due_ms,"
    " stored_bytes FROM entries WHERE tx_id = ?"
)
_SELECT_DUE: Final = (
    "SELECT e.seq, e.tx_id, e.tx_kind, e.priority_class, e.created_ms, e.attempts,"
    " e.next_due_ms, e.stored_bytes, e.nonce, e.ciphertext, e.material_id, e.chunk_index,"
    " m.sha256, m.size, m.chunk_count"
    " FROM entries e LEFT JOIN materials m ON m.material_id = e.material_id"
    " WHERE (e.next_due_ms <= :now OR e.next_due_ms > :now + :defer)"
    " AND NOT EXISTS (SELECT 1 FROM tx_materials tm JOIN materials mm"
    "   ON mm.material_id = tm.material_id"
    "   WHERE tm.tx_id = e.tx_id AND mm.state != 'delivered')"
    " ORDER BY e.priority_class, e.seq LIMIT :limit"
)
_SELECT_ONE: Final = (
    "SELECT e.seq, e.tx_id, e.tx_kind, e.priority_class, e.created_ms, e.attempts,"
    " e.next_due_ms, e.stored_bytes, e.nonce, e.ciphertext, e.material_id, e.chunk_index,"
    " m.sha256, m.size, m.chunk_count"
    " FROM entries e LEFT JOIN materials m ON m.material_id = e.material_id"
    " WHERE e.tx_id = ?"
)
_MARK_SENT: Final = (
    "UPDATE entries SET attempts = attempts + 1, last_sent_ms = ?, next_due_ms = ? WHERE tx_id = ?"
)
# take_due's batch in one statement (one JSON array of [tx_id, next_due_ms]): one step
# of SQLite where executemany took the GIL back from the event loop once per row.
_MARK_SENT_MANY: Final = (
    "UPDATE entries SET attempts = attempts + 1, last_sent_ms = ?1,"
    " next_due_ms = json_extract(j.value, '$[1]')"
    " FROM json_each(?2) AS j WHERE entries.tx_id = json_extract(j.value, '$[0]')"
)
_MOVE_DEAD: Final = (
    "INSERT OR REPLACE INTO dead_letters (tx_id, tx_kind, priority_class, created_ms,"
    " attempts, nonce, ciphertext, stored_bytes, material_id, chunk_index, dead_ms, cause,"
    " reason) SELECT tx_id, tx_kind, priority_class, created_ms, attempts, nonce, ciphertext,"
    " stored_bytes, material_id, chunk_index, ?, ?, ? FROM entries WHERE tx_id = ?"
)


def _meta(row: Sequence[Any], *, dead_reason: str | None = None) -> StoredTransaction:
    return StoredTransaction(
        seq=row[0],
        tx_id=row[1],
        tx_kind=row[2],
        priority_class=PriorityClass(row[3]),
        created_ms=row[4],
        attempts=row[5],
        next_due_ms=row[6],
        stored_bytes=row[7],
        dead_reason=dead_reason,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class NewEntry:
    """An entry to put: its id, kind, class, sealed-to-be body and referenced materials."""

    tx_id: str
    tx_kind: str
    priority_class: PriorityClass
    plaintext: bytes = field(repr=False)
    materials: Sequence[str] = ()
    receipt: Receipt | None = None


class Store:
    """Entries, dead letters and materials in one SQLite file; see ``schema.py``."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        sealer: Sealer,
        *,
        quota_bytes: int,
        low_priority_share: float,
    ) -> None:
        self.conn = conn
        self.sealer = sealer
        self.quota_bytes = quota_bytes
        self.low_priority_share = low_priority_share
        self.quarantined_now = 0  # corrupt entries found since open

    @classmethod
    @schema.translated
    def open(
        cls, path: Path, *, key_path: Path, quota_bytes: int, low_priority_share: float
    ) -> Store:
        """Open the database, then the key, and prove the key is the database's key."""
        conn = schema.connect(path)
        try:
            row = conn.execute("SELECT value FROM meta WHERE name = 'key_check'").fetchone()
            sealer = Sealer(load_key(key_path, create=row is None))
            if row is None:
                nonce, sealed = sealer.seal(KEY_CHECK_PLAINTEXT, KEY_CHECK_AAD)
                with schema.transaction(conn):
                    conn.execute("INSERT INTO meta VALUES ('key_check', ?)", (nonce + sealed,))
            else:
                try:
                    sealer.open(row[0][:12], row[0][12:], KEY_CHECK_AAD)
                except Unsealable:
                    raise KeyFileError(
                        f"key file {key_path} is not the key of outbox {path}; restore the "
                        "original key file (entries sealed with it cannot be read otherwise)",
                        path=str(key_path),
                    ) from None
        except BaseException:
            conn.close()
            raise
        return cls(conn, sealer, quota_bytes=quota_bytes, low_priority_share=low_priority_share)

    def close(self) -> None:
        """Checkpoint the WAL into the main file (if the disk lets it) and close."""
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            # Every commit is already durable in the WAL (docs/outbox.md); a full disk
            # only stops its copy into the main file, which the next open does again.
            log.warning("outbox: WAL not checkpointed at close (%s)", exc.sqlite_errorname)
        finally:
            self.conn.close()

    # -- accepting -------------------------------------------------------------------

    @schema.translated
    def put(self, entry: NewEntry, *, now_ms: int) -> tuple[StoredTransaction, bool]:
        """Insert one entry durably; ``(existing, False)`` if ``tx_id`` is already known."""
        with schema.transaction(self.conn):
            return self._put_in_txn(entry, now_ms=now_ms)

    @schema.translated
    def put_in_sequence(
        self, entry: NewEntry, *, stream: str, position: int, now_ms: int
    ) -> StoredTransaction | None:
        """Put the entry at ``position`` of ``stream`` unless the stream's cursor is there.

        Entry and cursor commit together (fsynced), so after a crash the cursor says
        exactly which of the stream's records are in the outbox: ``None`` means this
        position was put before (it may since have been delivered and removed).
        """
        with schema.transaction(self.conn):
            if position <= self._cursor(stream):
                return None
            stored, _ = self._put_in_txn(entry, now_ms=now_ms)
            self._set_cursor(stream, position)
        return stored

    @schema.translated
    def skip_in_sequence(self, *, stream: str, position: int) -> None:
        """Move ``stream``'s cursor to ``position`` without an entry (a record never sent)."""
        with schema.transaction(self.conn):
            if position > self._cursor(stream):
                self._set_cursor(stream, position)

    @schema.translated
    def cursor(self, stream: str) -> int:
        """The last position of ``stream`` that is in the outbox (0: none yet)."""
        return self._cursor(stream)

    def _cursor(self, stream: str) -> int:
        value = self.one("SELECT value FROM meta WHERE name = ?", _CURSOR_PREFIX + stream)
        return int(value) if value is not None else 0

    def _set_cursor(self, stream: str, position: int) -> None:
        self.conn.execute(
            "INSERT INTO meta (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (_CURSOR_PREFIX + stream, position),
        )

    def _put_in_txn(self, entry: NewEntry, *, now_ms: int) -> tuple[StoredTransaction, bool]:
        tx_id, tx_kind, priority_class = entry.tx_id, entry.tx_kind, entry.priority_class
        existing = self._find(tx_id)
        if existing is not None:
            if entry.receipt is not None:  # a put that timed out but committed, retried
                receipts.put_receipt(self, tx_id, tx_kind, entry.receipt, now_ms=now_ms)
            return existing, False
        for material_id in entry.materials:
            state = self.one("SELECT state FROM materials WHERE material_id = ?", material_id)
            if state is None:
                raise UnknownMaterial(material_id)
            if state == "rejected":
                raise InvalidEntry(f"material {material_id} was rejected by the server")
        nonce, sealed = self.sealer.seal(entry.plaintext, entry_aad(tx_id, priority_class, tx_kind))
        size = len(nonce) + len(sealed)
        self.check_quota(priority_class, size)
        cur = self.conn.execute(
            "INSERT INTO entries (tx_id, tx_kind, priority_class, created_ms, next_due_ms,"
            " nonce, ciphertext, stored_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (tx_id, tx_kind, int(priority_class), now_ms, now_ms, nonce, sealed, size),
        )
        self.conn.executemany(
            "INSERT OR IGNORE INTO tx_materials VALUES (?, ?)",
            [(tx_id, m) for m in entry.materials],
        )
        if entry.receipt is not None:
            receipts.put_receipt(self, tx_id, tx_kind, entry.receipt, now_ms=now_ms)
        stored = StoredTransaction(
            seq=cur.lastrowid or 0,
            tx_id=tx_id,
            tx_kind=tx_kind,
            priority_class=priority_class,
            created_ms=now_ms,
            attempts=0,
            next_due_ms=now_ms,
            stored_bytes=size,
        )
        return stored, True

    def _find(self, tx_id: str) -> StoredTransaction | None:
        row = self.conn.execute(_SELECT_META, (tx_id,)).fetchone()
        if row is not None:
            return _meta(row)
        row = self.conn.execute(
            "SELECT 0, tx_id, tx_kind, priority_class, created_ms, attempts, 0, stored_bytes,"
            " cause, reason FROM dead_letters WHERE tx_id = ?",
            (tx_id,),
        ).fetchone()
        if row is None:
            return None
        return _meta(row, dead_reason=f"{row[8]}: {row[9] or ''}".rstrip(": "))

    def check_quota(self, priority_class: PriorityClass, size: int) -> None:
        """``OutboxFull`` unless ``size`` more bytes of ``priority_class`` fit the quota."""
        used = self.used_bytes()
        if used + size > self.quota_bytes:
            raise OutboxFull(waiting=self.waiting(), used_bytes=used, quota_bytes=self.quota_bytes)
        if priority_class >= PriorityClass.HEALTH:
            low = int(self.one("SELECT bytes FROM usage WHERE bucket = 'low'"))
            if low + size > self.quota_bytes * self.low_priority_share:
                raise OutboxFull(
                    waiting=self.waiting(), used_bytes=used, quota_bytes=self.quota_bytes
                )

    def used_bytes(self) -> int:
        """Ciphertext bytes held, pending and dead letters together (kept by triggers)."""
        return int(self.one("SELECT bytes FROM usage WHERE bucket = 'all'"))

    def waiting(self) -> int:
        """Transactions (not chunks) not yet acknowledged by the server."""
        return int(
            self.one(
                "SELECT COUNT(*) FROM entries WHERE priority_class = ? AND material_id IS NULL",
                int(PriorityClass.TRANSACTION),
            )
        )

    def one(self, sql: str, *params: object) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    # -- sending ---------------------------------------------------------------------

    @schema.translated
    def next_batch(self, limit: int, *, now_ms: int, max_defer_ms: int) -> list[DueEntry]:
        """Due entries in (class, seq) order, decrypted; corrupt ones are quarantined.

        Due means ``next_due_ms <= now``, or so far in the future that the wall clock
        must have been set back. A transaction that references materials is due only
        once every chunk of them was acknowledged.
        """
        rows = self.conn.execute(
            _SELECT_DUE, {"now": now_ms, "defer": max_defer_ms, "limit": limit}
        ).fetchall()
        due: list[DueEntry] = []
        for row in rows:
            try:
                due.append(self._decrypt(row, now_ms=now_ms))
            except CorruptEntry:
                continue  # quarantined and counted by _decrypt; the queue moves on
        return due

    def _decrypt(self, row: Sequence[Any], *, now_ms: int) -> DueEntry:
        meta = _meta(row)
        nonce, sealed, material_id, index, sha256, size, count = row[8:15]
        try:
            plaintext = self.sealer.open(
                nonce, sealed, entry_aad(meta.tx_id, meta.priority_class, meta.tx_kind)
            )
            if material_id is None:
                body = decode_body(plaintext)
            else:
                body = chunk_body(
                    plaintext,
                    material_id=material_id,
                    index=index,
                    count=count,
                    size=size,
                    sha256=sha256,
                )
        except (Unsealable, ValueError, TypeError):
            self.quarantine(meta.tx_id, now_ms=now_ms)
            raise CorruptEntry(meta.tx_id) from None
        return DueEntry(meta=meta, body=body)

    @schema.translated
    def read(self, tx_id: str, *, now_ms: int) -> DueEntry | None:
        """One pending entry decrypted (``CorruptEntry`` after quarantining it)."""
        row = self.conn.execute(_SELECT_ONE, (tx_id,)).fetchone()
        return None if row is None else self._decrypt(row, now_ms=now_ms)

    @schema.translated
    def quarantine(self, tx_id: str, *, now_ms: int) -> None:
        """Move an entry that failed authentication to the dead letters, ciphertext kept."""
        with schema.transaction(self.conn):
            moved = self.move_dead([tx_id], cause="corrupt", reason=None, now=now_ms)
        if moved:
            self.quarantined_now += 1
            log.error("outbox entry %s failed authentication; quarantined", tx_id)

    @schema.translated
    def mark_sent(self, tx_ids: Sequence[str], *, now_ms: int, resend_after_ms: int) -> int:
        """Record one more attempt for each id and when it may be resent; rows changed.

        One bookkeeping commit for the whole batch (``synchronous=NORMAL``, see schema).
        """
        with schema.transaction(self.conn, durable=False):
            cur = self.conn.executemany(
                _MARK_SENT, [(now_ms, now_ms + resend_after_ms, t) for t in tx_ids]
            )
        return cur.rowcount

    @schema.translated
    def take_due(
        self,
        limit: int,
        *,
        now_ms: int,
        max_defer_ms: int,
        skip: Collection[str],
        resend_after_ms: Callable[[int], int],
    ) -> list[DueEntry]:
        """``next_batch`` without the ids in ``skip``, marked sent in one bookkeeping commit.

        What the sender does per batch, in one call of the worker thread instead of two.
        Each entry's ``next_due_ms`` becomes now + ``resend_after_ms(attempt)`` for the
        send it is taken for (``attempts + 1``: the entries come back as read, so their
        ``outgoing()`` carries that attempt).
        """
        due = self.next_batch(limit, now_ms=now_ms, max_defer_ms=max_defer_ms)
        due = [entry for entry in due if entry.tx_id not in skip]
        if due:
            rows = [[e.tx_id, now_ms + resend_after_ms(e.meta.attempts + 1)] for e in due]
            with schema.transaction(self.conn, durable=False):
                self.conn.execute(_MARK_SENT_MANY, (now_ms, json.dumps(rows)))
        return due

    @schema.translated
    def next_due_ms(self, *, now_ms: int, max_defer_ms: int) -> int | None:
        """When the earliest entry not due now falls due (``None``: none waits for a time).

        Entries already due but held back (materials not yet delivered) wait for an ack,
        not for a time, so they do not count here.
        """
        due_ms: int | None = self.one(
            "SELECT MIN(next_due_ms) FROM entries WHERE next_due_ms > ? AND next_due_ms <= ?",
            now_ms,
            now_ms + max_defer_ms,
        )
        return due_ms

    @schema.translated
    def make_all_due(self) -> int:
        """Make every pending entry due now (after a reconnect); rows changed."""
        with schema.transaction(self.conn, durable=False):
            cur = self.conn.execute("UPDATE entries SET next_due_ms = 0 WHERE next_due_ms > 0")
        return cur.rowcount

    def move_dead(
        self, tx_ids: Sequence[str], *, cause: DeadCause, reason: str | None, now: int
    ) -> int:
        """Move pending entries to the dead letters (inside the caller's transaction)."""
        moved = 0
        for tx_id in tx_ids:
            self.conn.execute(_MOVE_DEAD, (now, cause, reason, tx_id))
            moved += self.conn.execute("DELETE FROM entries WHERE tx_id = ?", (tx_id,)).rowcount
        return moved

    @schema.translated
    def stats(self, *, now_ms: int) -> dict[str, Any]:
        """Raw figures for ``OutboxStats``."""
        depth = {
            PriorityClass(cls): n
            for cls, n in self.conn.execute(
                "SELECT priority_class, COUNT(*) FROM entries GROUP BY priority_class"
            )
        }
        oldest = self.one("SELECT MIN(created_ms) FROM entries")
        dead = dict(self.conn.execute("SELECT cause, COUNT(*) FROM dead_letters GROUP BY cause"))
        return {
            "depth": depth,
            "oldest_age_s": None if oldest is None else max(0.0, (now_ms - oldest) / 1000),
            "dead_letters": sum(n for cause, n in dead.items() if cause != "corrupt"),
            "quarantined": dead.get("corrupt", 0),
            "used_bytes": self.used_bytes(),
            "materials_pending": self.one("SELECT COUNT(*) FROM materials WHERE state = 'pending'"),
        }
