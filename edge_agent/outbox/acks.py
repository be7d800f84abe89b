"""Acknowledgements and dead letters: what the server's answer does to a stored entry.

Functions over a ``Store`` (like ``materials.py``), each one SQLite transaction run in
the outbox's worker thread.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

from edge_agent.outbox import schema
from edge_agent.outbox.models import AckOutcome, DeadLetter, PriorityClass
from edge_agent.outbox.store import Store

_REASON_MAX: Final = 500
# The ids come as one JSON array parameter: one statement for any number of acks.
_DELETE_ENTRIES: Final = (
    "DELETE FROM entries WHERE tx_id IN (SELECT value FROM json_each(?))"
    " RETURNING tx_id, material_id"
)
_DELETE_TX_MATERIALS: Final = (
    "DELETE FROM tx_materials WHERE tx_id IN (SELECT value FROM json_each(?))"
)


@schema.translated
def ack(store: Store, tx_id: str, *, now_ms: int) -> bool:
    """Delete an entry the server durably stored; ``False`` if it is not pending."""
    return apply_acks(store, [(tx_id, "accepted", None)], now_ms=now_ms) == ["removed"]


@schema.translated
def apply_acks(
    store: Store, acks: Sequence[tuple[str, str, str | None]], *, now_ms: int
) -> list[AckOutcome]:
    """Apply ``(tx_id, status, reason)`` acks in one transaction; an outcome each.

    ``accepted``/``duplicate`` delete the entry (``removed``), ``rejected`` moves it to
    the dead letters (``dead_lettered``), an id not pending is ``unknown``. Deleting
    is bookkeeping (``synchronous=NORMAL``): a lost delete only means a resend the
    server answers ``duplicate``. A batch with a rejection commits fully synced.
    """
    durable = any(status == "rejected" for _, status, _ in acks)
    outcomes: list[AckOutcome] = []
    group: list[str] = []  # accepted/duplicate acks since the last rejection
    with schema.transaction(store.conn, durable=durable):
        for tx_id, status, reason in acks:
            if status != "rejected":
                group.append(tx_id)
                continue
            outcomes += _remove(store, group, now_ms=now_ms)
            group = []
            moved = _reject_in_txn(store, tx_id, reason, now_ms=now_ms)
            outcomes.append("dead_lettered" if moved else "unknown")
        outcomes += _remove(store, group, now_ms=now_ms)
    return outcomes


def _remove(store: Store, tx_ids: Sequence[str], *, now_ms: int) -> list[AckOutcome]:
    """Delete the entries of ``tx_ids``; an outcome per id, in order, as if deleted one
    by one (an id that was not pending, or is repeated, is ``unknown``).

    One ``DELETE … RETURNING`` for all of them rather than a read and two deletes per
    ack: a draining backlog applies dozens of acks per commit, and the statements per
    ack were most of the outbox thread's time (docs/performance.md, "Outbox drain").
    """
    if not tx_ids:
        return []
    ids = json.dumps(list(dict.fromkeys(tx_ids)))
    rows = store.conn.execute(_DELETE_ENTRIES, (ids,)).fetchall()
    removed: dict[str, str | None] = {row[0]: row[1] for row in rows}  # -> a chunk's material
    if removed:
        store.conn.execute(_DELETE_TX_MATERIALS, (json.dumps(list(removed)),))
    for material_id in {m for m in removed.values() if m is not None}:
        if not store.one("SELECT 1 FROM entries WHERE material_id = ?", material_id):
            store.conn.execute(
                "UPDATE materials SET state = 'delivered', done_ms = ?"
                " WHERE material_id = ? AND state = 'pending'",
                (now_ms, material_id),
            )
    outcomes: list[AckOutcome] = []
    for tx_id in tx_ids:
        if tx_id in removed:
            del removed[tx_id]  # a repeated id finds it gone, as a second delete would
            outcomes.append("removed")
        else:
            outcomes.append("unknown")
    return outcomes


@schema.translated
def reject(store: Store, tx_id: str, reason: str | None, *, now_ms: int) -> bool:
    """Dead-letter an entry the server refused; a refused chunk takes its material's
    other chunks and the transactions that reference it along."""
    with schema.transaction(store.conn):
        return _reject_in_txn(store, tx_id, reason, now_ms=now_ms)


def _reject_in_txn(store: Store, tx_id: str, reason: str | None, *, now_ms: int) -> bool:
    reason = None if reason is None else reason[:_REASON_MAX]
    material_id = store.one("SELECT material_id FROM entries WHERE tx_id = ?", tx_id)
    if not store.move_dead([tx_id], cause="rejected", reason=reason, now=now_ms):
        return False
    if material_id is not None:
        why = f"material {material_id} was rejected"
        store.conn.execute(
            "UPDATE materials SET state = 'rejected', done_ms = ? WHERE material_id = ?",
            (now_ms, material_id),
        )
        dependent = store.conn.execute(
            "SELECT tx_id FROM entries WHERE material_id = :m UNION"
            " SELECT tx_id FROM tx_materials WHERE material_id = :m",
            {"m": material_id},
        ).fetchall()
        store.move_dead(
            [r[0] for r in dependent], cause="material_rejected", reason=why, now=now_ms
        )
    return True


@schema.translated
def dead_letters(store: Store, limit: int) -> list[DeadLetter]:
    """The newest dead letters first (metadata only)."""
    rows = store.conn.execute(
        "SELECT tx_id, tx_kind, priority_class, created_ms, attempts, dead_ms, cause,"
        " reason FROM dead_letters ORDER BY dead_ms DESC, tx_id LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        DeadLetter(
            tx_id=r[0],
            tx_kind=r[1],
            priority_class=PriorityClass(r[2]),
            created_ms=r[3],
            attempts=r[4],
            dead_ms=r[5],
            cause=r[6],
            reason=r[7],
        )
        for r in rows
    ]


@schema.translated
def discard_dead_letter(store: Store, tx_id: str) -> bool:
    """Delete one dead letter for good (an operator's decision, after export)."""
    with schema.transaction(store.conn):
        cur = store.conn.execute("DELETE FROM dead_letters WHERE tx_id = ?", (tx_id,))
    return cur.rowcount > 0
