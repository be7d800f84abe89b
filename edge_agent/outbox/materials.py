"""Materials (scans, photos): stored as chunk entries of the outbox, sent and acked per chunk.

A material and all its chunks are stored in ONE SQLite transaction, so a transfer
resumes by construction and a crash never leaves half a material (docs/outbox.md,
"Material transfer").
"""

from __future__ import annotations

import hashlib

from edge_agent.outbox import schema
from edge_agent.outbox.codec import chunk_tx_id
from edge_agent.outbox.crypto import entry_aad
from edge_agent.outbox.errors import InvalidEntry
from edge_agent.outbox.models import MATERIAL_CHUNK_KIND, MaterialProgress, PriorityClass
from edge_agent.outbox.store import Store

_CLASS = PriorityClass.TRANSACTION


@schema.translated
def put_material(
    store: Store, material_id: str, data: bytes, *, chunk_bytes: int, now_ms: int
) -> tuple[MaterialProgress, bool]:
    """Store ``data`` as sealed chunks durably; ``(progress, False)`` if already stored."""
    if not data:
        raise InvalidEntry("a material cannot be empty")
    sha256 = hashlib.sha256(data).hexdigest()
    count = -(-len(data) // chunk_bytes)
    conn = store.conn
    with schema.transaction(conn):
        existing = material_progress(store, material_id)
        if existing is not None:
            return existing, False
        rows: list[tuple[object, ...]] = []
        total = 0
        for index in range(count):
            tx_id = chunk_tx_id(material_id, index)
            chunk = data[index * chunk_bytes : (index + 1) * chunk_bytes]
            aad = entry_aad(tx_id, _CLASS, MATERIAL_CHUNK_KIND)
            nonce, sealed = store.sealer.seal(chunk, aad)
            size = len(nonce) + len(sealed)
            total += size
            row = (tx_id, MATERIAL_CHUNK_KIND, int(_CLASS), now_ms, now_ms, nonce, sealed)
            rows.append((*row, size, material_id, index))
        store.check_quota(_CLASS, total)
        conn.execute(
            "INSERT INTO materials (material_id, sha256, size, chunk_count, created_ms)"
            " VALUES (?, ?, ?, ?, ?)",
            (material_id, sha256, len(data), count, now_ms),
        )
        conn.executemany(
            "INSERT INTO entries (tx_id, tx_kind, priority_class, created_ms, next_due_ms,"
            " nonce, ciphertext, stored_bytes, material_id, chunk_index)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    progress = MaterialProgress(
        material_id=material_id,
        sha256=sha256,
        size=len(data),
        chunk_count=count,
        chunks_acked=0,
        state="pending",
    )
    return progress, True


@schema.translated
def material_progress(store: Store, material_id: str) -> MaterialProgress | None:
    """Where a material's transfer stands, from clear metadata only."""
    row = store.conn.execute(
        "SELECT sha256, size, chunk_count, state FROM materials WHERE material_id = ?",
        (material_id,),
    ).fetchone()
    if row is None:
        return None
    unacked = store.conn.execute(
        "SELECT (SELECT COUNT(*) FROM entries WHERE material_id = :m)"
        " + (SELECT COUNT(*) FROM dead_letters WHERE material_id = :m)",
        {"m": material_id},
    ).fetchone()[0]
    return MaterialProgress(
        material_id=material_id,
        sha256=row[0],
        size=row[1],
        chunk_count=row[2],
        chunks_acked=row[2] - unacked,
        state=row[3],
    )


@schema.translated
def prune_delivered(store: Store, *, older_than_ms: int) -> int:
    """Forget delivered materials no pending transaction references; rows removed."""
    with schema.transaction(store.conn):
        cur = store.conn.execute(
            "DELETE FROM materials WHERE state = 'delivered' AND done_ms < ?"
            " AND material_id NOT IN (SELECT material_id FROM tx_materials)",
            (older_than_ms,),
        )
    return cur.rowcount
