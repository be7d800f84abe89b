"""Idempotency receipts: the answer a local API request got, kept for its retries.

Functions over a ``Store``; ``put_receipt`` runs inside the put's own transaction, so a
receipt commits with its entry and outlives the entry's ack (docs/outbox.md,
"Idempotency receipts").
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from edge_agent.outbox import schema
from edge_agent.outbox.codec import decode_body
from edge_agent.outbox.crypto import Unsealable, receipt_aad
from edge_agent.outbox.errors import CorruptEntry
from edge_agent.outbox.models import Receipt, StoredReceipt

if TYPE_CHECKING:
    from edge_agent.outbox.store import Store

log = logging.getLogger(__name__)


def put_receipt(store: Store, tx_id: str, tx_kind: str, receipt: Receipt, *, now_ms: int) -> None:
    """Keep ``receipt`` for ``tx_id`` (in the caller's transaction); the first one wins."""
    plaintext = json.dumps(receipt.answer, separators=(",", ":"), ensure_ascii=False)
    nonce, sealed = store.sealer.seal(plaintext.encode(), receipt_aad(tx_id, tx_kind))
    store.conn.execute(
        "INSERT OR IGNORE INTO receipts (tx_id, tx_kind, request_sha256, created_ms,"
        " nonce, ciphertext) VALUES (?, ?, ?, ?, ?, ?)",
        (tx_id, tx_kind, receipt.request_sha256, now_ms, nonce, sealed),
    )


@schema.translated
def receipt(store: Store, tx_id: str) -> StoredReceipt | None:
    """The receipt kept for ``tx_id``; ``CorruptEntry`` if it fails authentication."""
    row = store.conn.execute(
        "SELECT tx_kind, request_sha256, created_ms, nonce, ciphertext FROM receipts"
        " WHERE tx_id = ?",
        (tx_id,),
    ).fetchone()
    if row is None:
        return None
    tx_kind, digest, created_ms, nonce, sealed = row
    try:
        answer = decode_body(store.sealer.open(nonce, sealed, receipt_aad(tx_id, tx_kind)))
    except (Unsealable, ValueError, TypeError):
        log.error("receipt of %s failed authentication", tx_id)  # noqa: TRY400
        raise CorruptEntry(tx_id) from None
    return StoredReceipt(
        tx_id=tx_id,
        tx_kind=str(tx_kind),
        request_sha256=str(digest),
        answer=answer,
        created_ms=int(created_ms),
    )


@schema.translated
def prune_receipts(store: Store, *, older_than_ms: int) -> int:
    """Forget receipts made before ``older_than_ms``; how many went."""
    with schema.transaction(store.conn, durable=False):
        cur = store.conn.execute("DELETE FROM receipts WHERE created_ms < ?", (older_than_ms,))
    return cur.rowcount
