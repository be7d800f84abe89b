"""Idempotency receipts: committed with their entry, kept after its ack, sealed, pruned."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from edge_agent.outbox import CorruptEntry, OutboxFull, PriorityClass, Receipt
from govedge_wire import TransactionAck

from .helpers import OUTLET, FakeClock, make_outbox

TX = PriorityClass.TRANSACTION
TEXT = "窗口服务很耐心-receipt-marker"
RECEIPT = Receipt(request_sha256="ab" * 32, answer={"status": "rated", "stars": 5, "text": TEXT})


def _ack(tx_id: str) -> TransactionAck:
    return TransactionAck(outlet_id=OUTLET, session=1, seq=0, tx_id=tx_id, status="accepted")


def test_receipt_outlives_the_ack_and_a_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with make_outbox(tmp_path) as outbox:
            await outbox.put("evaluation", {"level_code": 1}, priority_class=TX,
                             tx_id="eval-key-0001", receipt=RECEIPT)  # fmt: skip
            # a retried put (it timed out but had committed) keeps the first receipt
            other = Receipt(request_sha256="cd" * 32, answer={"status": "rated"})
            await outbox.put("evaluation", {"level_code": 1}, priority_class=TX,
                             tx_id="eval-key-0001", receipt=other)  # fmt: skip
            assert await outbox.apply_ack(_ack("eval-key-0001")) == "removed"
            assert await outbox.read("eval-key-0001") is None
        async with make_outbox(tmp_path) as outbox:
            stored = await outbox.receipt("eval-key-0001")
            assert stored is not None
            assert stored.tx_kind == "evaluation"
            assert stored.request_sha256 == RECEIPT.request_sha256
            assert stored.answer == RECEIPT.answer
            assert await outbox.receipt("never-put-0001") is None

    asyncio.run(scenario())
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("outbox.db*"))
    assert TEXT.encode() not in raw  # sealed at rest, like the bodies


def test_a_refused_put_keeps_no_receipt(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with make_outbox(tmp_path, quota_bytes=1_000) as outbox:
            with pytest.raises(OutboxFull):
                await outbox.put("evaluation", {"pad": "x" * 2_000}, priority_class=TX,
                                 tx_id="eval-key-full", receipt=RECEIPT)  # fmt: skip
            assert await outbox.receipt("eval-key-full") is None

    asyncio.run(scenario())


def test_receipts_are_pruned_after_the_retention(tmp_path: Path) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        async with make_outbox(tmp_path, clock=clock, receipt_retention_s=86_400) as outbox:
            await outbox.put("evaluation", {"level_code": 1}, priority_class=TX,
                             tx_id="eval-old-0001", receipt=RECEIPT)  # fmt: skip
        clock.advance(86_399)
        async with make_outbox(tmp_path, clock=clock, receipt_retention_s=86_400) as outbox:
            assert await outbox.receipt("eval-old-0001") is not None
        clock.advance(2)
        async with make_outbox(tmp_path, clock=clock, receipt_retention_s=86_400) as outbox:
            assert await outbox.receipt("eval-old-0001") is None  # pruned at open
            assert await outbox.read("eval-old-0001") is not None  # the entry is untouched

    asyncio.run(scenario())


def test_a_receipt_moved_to_another_row_fails_authentication(tmp_path: Path) -> None:
    async def scenario(step: str) -> None:
        async with make_outbox(tmp_path) as outbox:
            if step == "put":
                for tx_id in ("eval-key-000a", "eval-key-000b"):
                    await outbox.put("evaluation", {"level_code": 1}, priority_class=TX,
                                     tx_id=tx_id, receipt=RECEIPT)  # fmt: skip
                return
            with pytest.raises(CorruptEntry):
                await outbox.receipt("eval-key-000b")

    asyncio.run(scenario("put"))
    conn = sqlite3.connect(tmp_path / "outbox.db")
    with conn:
        conn.execute(
            "UPDATE receipts SET (nonce, ciphertext) = (SELECT nonce, ciphertext FROM receipts"
            " WHERE tx_id = 'eval-key-000a') WHERE tx_id = 'eval-key-000b'"
        )
    conn.close()
    asyncio.run(scenario("read"))
