"""Accepting, ordering, acknowledging, dead-lettering, quota and stats."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge_agent.outbox import InvalidEntry, Outbox, OutboxClosed, OutboxFull, PriorityClass
from govedge_wire import TransactionAck

from .helpers import OUTLET, FakeClock, make_outbox

TX = PriorityClass.TRANSACTION


def _ack(tx_id: str, status: str = "accepted", reason: str | None = None) -> TransactionAck:
    return TransactionAck(
        outlet_id=OUTLET, session=1, seq=0, tx_id=tx_id, status=status, reason=reason
    )


def test_next_batch_orders_by_class_then_fifo(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        async with make_outbox(tmp_path) as outbox:
            for tx_id, cls in [
                ("telemetry-1", PriorityClass.TELEMETRY),
                ("health-0001", PriorityClass.HEALTH),
                ("submit-0001", TX),
                ("presence-01", PriorityClass.CONTROL),
                ("submit-0002", TX),
                ("telemetry-2", PriorityClass.TELEMETRY),
                ("submit-0003", TX),
            ]:
                await outbox.put("k", {"v": 1}, priority_class=cls, tx_id=tx_id)
            return [e.tx_id for e in await outbox.next_batch(100)]

    assert asyncio.run(scenario()) == [
        "presence-01",
        "submit-0001",
        "submit-0002",
        "submit-0003",
        "health-0001",
        "telemetry-1",
        "telemetry-2",
    ]


def test_put_is_idempotent_by_tx_id(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with make_outbox(tmp_path) as outbox:
            first = await outbox.put("evaluation", {"level": 5}, priority_class=TX)
            again = await outbox.put(
                "evaluation", {"level": 1}, priority_class=TX, tx_id=first.tx_id
            )
            assert again.seq == first.seq
            batch = await outbox.next_batch(10)
            assert [e.tx_id for e in batch] == [first.tx_id]
            assert batch[0].body == {"level": 5}  # the first accepted body stands
            assert len(first.tx_id) == 32  # a fresh UUID4 hex

    asyncio.run(scenario())


def test_ack_removes_and_unknown_ack_is_counted(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with make_outbox(tmp_path) as outbox:
            a = await outbox.put("queue.call", {"ticket": "A001"}, priority_class=TX)
            b = await outbox.put("queue.call", {"ticket": "A002"}, priority_class=TX)
            assert await outbox.apply_ack(_ack(a.tx_id)) == "removed"
            assert await outbox.apply_ack(_ack(a.tx_id, "duplicate")) == "unknown"
            assert await outbox.apply_ack(_ack("never-was-here")) == "unknown"
            assert [e.tx_id for e in await outbox.next_batch(10)] == [b.tx_id]
            stats = await outbox.stats()
            assert stats.unknown_acks == 2
            assert stats.depth == {TX: 1}
            assert stats.delivery_rate_per_min > 0

    asyncio.run(scenario())


def test_rejected_ack_moves_entry_to_dead_letters(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with make_outbox(tmp_path) as outbox:
            bad = await outbox.put("submission", {"form": "x"}, priority_class=TX)
            good = await outbox.put("submission", {"form": "y"}, priority_class=TX)
            outcome = await outbox.apply_ack(_ack(bad.tx_id, "rejected", "unknown service item"))
            assert outcome == "dead_lettered"
            assert [e.tx_id for e in await outbox.next_batch(10)] == [good.tx_id]
            (dead,) = await outbox.dead_letters()
            assert (dead.tx_id, dead.cause, dead.reason) == (
                bad.tx_id,
                "rejected",
                "unknown service item",
            )
            again = await outbox.put(
                "submission", {"form": "x"}, priority_class=TX, tx_id=bad.tx_id
            )
            assert again.dead_reason is not None  # kept, visible, and never queued again
            assert len(await outbox.next_batch(10)) == 1
            assert (await outbox.stats()).dead_letters == 1

    asyncio.run(scenario())


async def _fill(outbox: Outbox, cls: PriorityClass, accepted: list[str]) -> None:
    for n in range(1000):
        stored = await outbox.put("submission", {"n": n, "pad": "x" * 200}, priority_class=cls)
        accepted.append(stored.tx_id)


def test_quota_full_refuses_new_and_keeps_existing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with make_outbox(tmp_path, quota_bytes=3_000) as outbox:
            accepted: list[str] = []
            with pytest.raises(OutboxFull) as info:
                await _fill(outbox, TX, accepted)
            message = str(info.value)
            assert message.startswith(f"outbox full: {len(accepted)} transactions waiting")
            assert "nothing accepted was lost" in message
            batch = await outbox.next_batch(1000)
            assert [e.tx_id for e in batch] == accepted
            assert [e.body["n"] for e in batch] == list(range(len(accepted)))
            stats = await outbox.stats()
            assert stats.used_bytes <= stats.quota_bytes

    asyncio.run(scenario())


def test_low_priority_classes_cannot_starve_transactions(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with make_outbox(tmp_path, quota_bytes=10_000, low_priority_share=0.2) as outbox:
            telemetry: list[str] = []
            with pytest.raises(OutboxFull):
                await _fill(outbox, PriorityClass.TELEMETRY, telemetry)
            assert 0 < len(telemetry) < 10
            await outbox.put("evaluation", {"level": 5}, priority_class=TX)  # still accepted

    asyncio.run(scenario())


def test_invalid_entries_are_refused_without_echoing_the_body(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with make_outbox(tmp_path) as outbox:
            with pytest.raises(InvalidEntry) as info:
                await outbox.put("s", {"id_number": float("nan")}, priority_class=TX)
            with pytest.raises(InvalidEntry):
                await outbox.put("s", {"scan": "3301" * 70_000}, priority_class=TX)
            with pytest.raises(InvalidEntry):
                await outbox.put("s", {}, priority_class=TX, tx_id="bad id!")
            assert "nan" not in str(info.value).lower()
            assert await outbox.next_batch(10) == []

    asyncio.run(scenario())


def test_stats_report_depth_age_and_quota(tmp_path: Path) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        async with make_outbox(tmp_path, clock=clock) as outbox:
            await outbox.put("evaluation", {"level": 5}, priority_class=TX)
            clock.advance(90)
            await outbox.put("sample", {"cpu": 3}, priority_class=PriorityClass.TELEMETRY)
            stats = await outbox.stats()
            assert stats.depth == {TX: 1, PriorityClass.TELEMETRY: 1}
            assert stats.oldest_age_s == pytest.approx(90)
            metrics = stats.as_metrics()
            assert metrics["outbox_depth_transaction"] == 1
            assert 0 < metrics["outbox_quota_used_ratio"] < 1

    asyncio.run(scenario())


def test_closed_outbox_refuses_and_second_process_is_locked_out(tmp_path: Path) -> None:
    async def scenario() -> None:
        outbox = make_outbox(tmp_path)
        with pytest.raises(OutboxClosed):
            await outbox.put("k", {}, priority_class=TX)
        async with outbox:
            other = Outbox(tmp_path / "outbox.db", key_path=tmp_path / "outbox.key", quota_bytes=1)
            with pytest.raises(Exception, match="locked") as info:
                async with other:
                    pass
            assert type(info.value).__name__ == "StorageError"
        with pytest.raises(OutboxClosed):
            await outbox.next_batch(1)

    asyncio.run(scenario())
