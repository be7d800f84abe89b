"""The quota's running totals (``usage``, kept by triggers) always equal the rows."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

from edge_agent.outbox import Outbox, PriorityClass
from govedge_wire import TransactionAck

from .helpers import OUTLET, make_outbox

TRUTH = {
    "all": "SELECT (SELECT COALESCE(SUM(stored_bytes), 0) FROM entries)"
    " + (SELECT COALESCE(SUM(stored_bytes), 0) FROM dead_letters)",
    "low": "SELECT COALESCE(SUM(stored_bytes), 0) FROM entries WHERE priority_class >= 2",
}


async def _check(outbox: Outbox) -> int:
    store = outbox._store
    assert store is not None

    def read() -> tuple[dict[str, int], dict[str, int]]:
        kept = dict(store.conn.execute("SELECT bucket, bytes FROM usage").fetchall())
        truth = {b: store.conn.execute(q).fetchone()[0] for b, q in TRUTH.items()}
        return kept, truth

    kept, truth = await outbox._run(read)
    assert kept == truth
    assert (await outbox.stats()).used_bytes == truth["all"]
    return truth["all"]


def _ack(tx_id: str, status: str = "accepted") -> TransactionAck:
    return TransactionAck(
        outlet_id=OUTLET, session=1, seq=0, tx_id=tx_id, status=status, reason="no"
    )


def test_usage_follows_every_kind_of_change_and_a_reopen(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with make_outbox(tmp_path) as outbox:
            assert await _check(outbox) == 0
            tx = [
                (await outbox.put("evaluation", {"n": n}, priority_class=cls)).tx_id
                for n, cls in enumerate(
                    [PriorityClass.TRANSACTION, PriorityClass.HEALTH, PriorityClass.TELEMETRY] * 3
                )
            ]
            await _check(outbox)
            await outbox.put_material(b"scan" * 100_000, material_id="mat-usage-1")
            await outbox.put_material(b"photo" * 50_000, material_id="mat-usage-2")
            await _check(outbox)
            await outbox.apply_acks([_ack(tx[0]), _ack(tx[1], "duplicate")])  # deleted
            await outbox.apply_acks([_ack(tx[2], "rejected")])  # to the dead letters
            await _check(outbox)
            await outbox.apply_acks([_ack("mat-usage-2.c0", "rejected")])  # whole material
            await _check(outbox)
            await outbox.put_in_sequence(
                "queue.call", {"n": 1}, stream="queue_events", position=1,
                priority_class=PriorityClass.TRANSACTION, tx_id="queue-event-0001",
            )  # fmt: skip
            assert await outbox.discard_dead_letter(tx[2])
            await _check(outbox)
        async with make_outbox(tmp_path) as outbox:
            assert await _check(outbox) > 0

    asyncio.run(scenario())


def test_a_tampered_row_is_quarantined_without_skewing_the_usage(tmp_path: Path) -> None:
    async def put() -> str:
        async with make_outbox(tmp_path) as outbox:
            await outbox.put("health", {"n": 0}, priority_class=PriorityClass.HEALTH)
            return (await outbox.put("health", {"n": 1}, priority_class=PriorityClass.HEALTH)).tx_id

    bad = asyncio.run(put())
    with contextlib.closing(sqlite3.connect(tmp_path / "outbox.db")) as conn, conn:
        conn.execute("UPDATE entries SET priority_class = 1 WHERE tx_id = ?", (bad,))

    async def reopen() -> None:
        async with make_outbox(tmp_path) as outbox:
            await _check(outbox)
            await outbox.next_batch(10)  # fails authentication: quarantined
            assert (await outbox.stats()).quarantined == 1
            await _check(outbox)

    asyncio.run(reopen())


def test_a_database_made_before_the_usage_table_is_counted_at_open(tmp_path: Path) -> None:
    async def put() -> None:
        async with make_outbox(tmp_path) as outbox:
            for n in range(5):
                await outbox.put("evaluation", {"n": n}, priority_class=PriorityClass.TELEMETRY)

    asyncio.run(put())
    # as the previous version left it: no usage table, no triggers
    with contextlib.closing(sqlite3.connect(tmp_path / "outbox.db")) as conn, conn:
        for name in [
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        ]:
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("DROP TABLE usage")

    async def reopen() -> None:
        async with make_outbox(tmp_path) as outbox:
            assert await _check(outbox) > 0
            await outbox.put("evaluation", {"n": 9}, priority_class=PriorityClass.TRANSACTION)
            await _check(outbox)

    asyncio.run(reopen())
