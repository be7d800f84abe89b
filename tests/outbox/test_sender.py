"""The sender: window, resend after ack timeout in order, reconnect, and the rate limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from edge_agent.outbox import AckOutcome, OutboxSender, PriorityClass
from govedge_wire import Transaction, TransactionAck

from .helpers import FakeClock, FakeServer, make_outbox, make_sender, put_many

TX = PriorityClass.TRANSACTION


def test_resend_after_ack_timeout_keeps_order_and_counts_attempts(tmp_path: Path) -> None:
    clock = FakeClock()
    server = FakeServer()

    async def scenario() -> None:
        async with make_outbox(tmp_path, clock=clock) as outbox:
            ids = [
                (await outbox.put("evaluation", {"n": n}, priority_class=TX)).tx_id
                for n in range(4)
            ]
            sender = make_sender(outbox, server, clock, ack_timeout_s=10, max_backoff_s=15)
            assert await sender.pump() == 4
            await sender.on_ack(server.ack_for(server.published[1]))
            server.published.clear()

            clock.advance(5)
            assert await sender.pump() == 0  # within the ack timeout: nothing resent
            clock.advance(6)
            assert await sender.pump() == 3
            assert [(m.tx_id, m.attempt) for m in server.published] == [
                (ids[0], 2),
                (ids[2], 2),
                (ids[3], 2),
            ]
            entry = await outbox.read(ids[0])
            assert entry is not None
            assert entry.meta.attempts == 2  # durable try count
            server.published.clear()

            clock.advance(11)
            assert await sender.pump() == 0  # backoff doubled (capped at 15 s)
            clock.advance(5)
            assert await sender.pump() == 3
            assert [m.attempt for m in server.published] == [3, 3, 3]
            assert sender.resent_total == 6

    asyncio.run(scenario())


def test_window_limits_in_flight_and_acks_open_it(tmp_path: Path) -> None:
    clock = FakeClock()
    server = FakeServer()

    async def scenario() -> None:
        async with make_outbox(tmp_path, clock=clock) as outbox:
            for n in range(10):
                await outbox.put("queue.call", {"n": n}, priority_class=TX)
            sender = make_sender(outbox, server, clock, window=4)
            assert await sender.pump() == 4
            assert await sender.pump() == 0
            for message in server.published[:2]:
                await sender.on_ack(server.ack_for(message))
            assert await sender.pump() == 2
            assert [m.body["n"] for m in server.published] == list(range(6))

    asyncio.run(scenario())


def test_reconnect_resends_everything_unacked_from_the_oldest(tmp_path: Path) -> None:
    clock = FakeClock()
    server = FakeServer()

    async def scenario() -> None:
        async with make_outbox(tmp_path, clock=clock) as outbox:
            for n in range(5):
                await outbox.put("evaluation", {"n": n}, priority_class=TX)
            first = make_sender(outbox, server, clock, idle_poll_s=0.01)
            task = asyncio.create_task(first.run(), name="sender-1")
            await server.wait_published(5)
            await first.on_ack(server.ack_for(server.published[2]))
            first.stop()
            await asyncio.wait_for(task, timeout=10)
            server.published.clear()

            second = make_sender(outbox, server, clock, idle_poll_s=0.01)  # new connection
            task = asyncio.create_task(second.run(), name="sender-2")
            await server.wait_published(4)
            second.stop()
            await asyncio.wait_for(task, timeout=10)
            assert [(m.body["n"], m.attempt) for m in server.published] == [
                (0, 2),
                (1, 2),
                (3, 2),
                (4, 2),
            ]

    asyncio.run(scenario())


def test_rate_limit_is_honoured_as_a_ratio(tmp_path: Path) -> None:
    clock = FakeClock()
    server = FakeServer()
    sent_at: list[float] = []
    rate, burst, total = 5.0, 5, 60

    async def publish_and_stamp(message: object) -> None:
        sent_at.append(clock.now)

    async def scenario() -> None:
        async with make_outbox(tmp_path, clock=clock) as outbox:
            for n in range(total):
                await outbox.put("evaluation", {"n": n}, priority_class=TX)
            sender = make_sender(outbox, server, clock, rate_per_s=rate, burst=burst, window=1000)
            sender._publish = publish_and_stamp
            while await sender.pump():
                pass

    asyncio.run(scenario())
    assert len(sent_at) == total
    start = sent_at[0]
    for window in (1.0, 2.0, 5.0, 10.0):
        in_window = sum(1 for t in sent_at if t - start <= window)
        assert in_window <= burst + rate * window + 1e-9
    # Steady state: after the burst, the drain runs at the configured rate.
    elapsed = sent_at[-1] - start
    assert (total - burst) / elapsed <= rate * 1.01
    assert (total - burst) / elapsed >= rate * 0.95


def test_a_batch_is_published_in_order_without_waiting_for_each_puback(
    tmp_path: Path,
) -> None:
    """Pipelining: every publish of a batch is handed to the client before the first
    PUBACK arrives, in (class, sequence) order; the batch's attempts are durable first."""
    clock = FakeClock()
    server = FakeServer()
    pubacks = asyncio.Event()
    started: list[str] = []

    async def publish_then_wait_for_puback(message: Transaction) -> None:
        started.append(message.tx_id)
        await server.publish(message)
        await pubacks.wait()

    async def scenario() -> None:
        async with make_outbox(tmp_path, clock=clock) as outbox:
            ids = await put_many(outbox, 8)
            sender = make_sender(outbox, server, clock, batch_size=8)
            sender._publish = publish_then_wait_for_puback
            pump = asyncio.create_task(sender.pump())
            await server.wait_published(8)
            assert started == ids  # all eight on the wire, none acknowledged by the broker
            assert not pump.done()
            for tx_id in ids:  # marked sent (durably) before the first publish
                entry = await outbox.read(tx_id)
                assert entry is not None
                assert entry.meta.attempts == 1
            pubacks.set()
            assert await pump == 8
            assert sender.inflight == 8

    asyncio.run(scenario())


def test_an_ack_that_overtakes_the_puback_frees_the_window(tmp_path: Path) -> None:
    """The server's ack can be handled before our publish call returns (PUBACK and txack
    arrive together); the entry must not stay "in flight" until its ack timeout."""
    clock = FakeClock()
    server = FakeServer()
    sender_ref: list[OutboxSender] = []

    async def publish_acked_before_puback(message: Transaction) -> None:
        await server.publish(message)
        await sender_ref[0].on_ack(server.ack_for(message))

    async def scenario() -> None:
        async with make_outbox(tmp_path, clock=clock) as outbox:
            await put_many(outbox, 6)
            sender = make_sender(outbox, server, clock, window=2, batch_size=2)
            sender_ref.append(sender)
            sender._publish = publish_acked_before_puback
            total = 0
            for _ in range(3):
                total += await sender.pump()
            assert total == 6
            assert sender.inflight == 0
            assert (await outbox.stats()).depth == {}
            assert sender.ack_timeouts == 0

    asyncio.run(scenario())


def test_acks_arriving_together_are_applied_in_one_batch(tmp_path: Path) -> None:
    """``ack_soon`` does not wait: acks queued meanwhile share one commit; each gets its
    outcome (removed, dead-lettered, unknown) and the enqueue path stays fully synced."""
    clock = FakeClock()
    server = FakeServer()

    async def scenario() -> None:
        async with make_outbox(tmp_path, clock=clock) as outbox:
            await put_many(outbox, 40)
            sender = make_sender(outbox, server, clock, window=64, batch_size=64)
            assert await sender.pump() == 40
            calls: list[int] = []
            apply_acks = outbox.apply_acks

            async def counting(acks: Sequence[TransactionAck]) -> list[AckOutcome]:
                calls.append(len(acks))
                return await apply_acks(acks)

            outbox.apply_acks = counting  # type: ignore[method-assign]
            acks = [server.ack_for(m) for m in server.published]
            acks[7] = acks[7].model_copy(update={"status": "rejected", "reason": "bad item"})
            unknown = acks[0].model_copy(update={"tx_id": "never-sent-0001"})
            futures = [sender.ack_soon(a) for a in [*acks, unknown]]
            outcomes = await asyncio.gather(*futures)
            assert outcomes.count("removed") == 39
            assert outcomes[7] == "dead_lettered"
            assert outcomes[-1] == "unknown"
            assert sum(calls) == 41
            assert len(calls) <= 2  # the first ack alone, then everything queued meanwhile
            assert sender.inflight == 0
            stats = await outbox.stats()
            assert stats.depth == {}
            assert stats.dead_letters == 1
            assert stats.unknown_acks == 1
            store = outbox._store
            assert store is not None
            check = await outbox._run(
                lambda: store.conn.execute("PRAGMA synchronous").fetchone()[0]
            )
            assert check == 2  # FULL again for the next put

    asyncio.run(scenario())


def test_run_refills_the_window_before_the_brokers_pubacks(tmp_path: Path) -> None:
    """``run`` does not hold the next batch until the broker acknowledged the previous
    one: acks that made room are used at once; order and each-once are kept."""
    clock = FakeClock()
    server = FakeServer()
    pubacks = asyncio.Event()  # the broker acknowledges nothing until the end

    async def publish_puback_late(message: Transaction) -> None:
        await server.publish(message)
        await pubacks.wait()

    async def scenario() -> None:
        async with make_outbox(tmp_path, clock=clock) as outbox:
            ids = await put_many(outbox, 12)
            sender = make_sender(outbox, server, clock, window=4, batch_size=4)
            sender._publish = publish_puback_late
            task = asyncio.create_task(sender.run())
            for count in (4, 8, 12):
                await server.wait_published(count)
                for message in server.published[count - 4 : count]:
                    sender.ack_soon(server.ack_for(message))
            assert [m.tx_id for m in server.published] == ids  # no PUBACK seen yet
            pubacks.set()
            assert await sender.acks_applied(10)
            sender.stop()
            await asyncio.wait_for(task, timeout=10)
            assert sender.sent_total == 12
            assert (await outbox.stats()).depth == {}

    asyncio.run(scenario())


def test_a_failed_publish_ends_run_and_loses_nothing(tmp_path: Path) -> None:
    """The connection drops under a batch: ``run`` raises the publish's error, and every
    entry not acked by the server is still in the outbox for the next connection."""
    clock = FakeClock()
    server = FakeServer()

    class ConnectionLost(Exception):
        pass

    async def publish_then_drop(message: Transaction) -> None:
        if len(server.published) >= 3:
            raise ConnectionLost
        await server.publish(message)

    async def scenario() -> None:
        async with make_outbox(tmp_path, clock=clock) as outbox:
            ids = await put_many(outbox, 6)
            sender = make_sender(outbox, server, clock, idle_poll_s=0.01)
            sender._publish = publish_then_drop
            try:
                await asyncio.wait_for(sender.run(), timeout=10)
            except ConnectionLost:
                pass
            else:
                raise AssertionError("run() returned although a publish failed")
            await sender.on_ack(server.ack_for(server.published[0]))
            await outbox.make_all_due()  # what the next connection's run() does
            assert [e.tx_id for e in await outbox.next_batch(10)] == ids[1:]

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_an_idle_sender_leaves_the_outbox_alone_and_sends_a_put_at_once(tmp_path: Path) -> None:
    """Idle, the sender waits for the outbox to say that something changed instead of
    reading it again and again (each read woke the agent's event loop and its SQLite
    thread once a second: issue 17); an entry put meanwhile still goes out at once.

    Real clock and real SQLite outbox; the broker side is the recording ``FakeServer``.
    """
    server = FakeServer()

    async def scenario() -> None:
        async with make_outbox(tmp_path) as outbox:
            reads = 0
            first_read = asyncio.Event()
            take_due = outbox.take_due

            async def counted(*args: object, **kwargs: object) -> list[object]:
                nonlocal reads
                reads += 1
                first_read.set()
                return await take_due(*args, **kwargs)  # type: ignore[arg-type]

            outbox.take_due = counted  # type: ignore[assignment,method-assign]
            sender = OutboxSender(outbox, server.publish, make_message=server.make_message)
            task = asyncio.create_task(sender.run(), name="sender")
            await first_read.wait()
            await asyncio.sleep(0.2)  # it found nothing and waits
            settled = reads
            await asyncio.sleep(2.5)  # the old sender read its outbox every second
            assert reads == settled, "an idle sender read its outbox"

            await outbox.put("evaluation", {"n": 1}, priority_class=TX)
            await server.wait_published(1)
            assert [m.body["n"] for m in server.published] == [1]
            sender.stop()
            await asyncio.wait_for(task, timeout=10)

    asyncio.run(scenario())


@pytest.mark.timeout(30)
def test_the_outbox_says_when_its_next_entry_falls_due(tmp_path: Path) -> None:
    """What an idle sender waits for besides a put or an ack: an entry sent and not yet
    acknowledged falls due again at its resend time; with none, nothing waits for a time."""

    async def scenario() -> None:
        async with make_outbox(tmp_path) as outbox:
            assert await outbox.next_due_in_s() is None  # empty
            await put_many(outbox, 2)
            assert await outbox.next_due_in_s() is None  # both due now
            before = time.time()
            await outbox.take_due(1, skip=(), resend_after_s=lambda attempt: 40.0)
            waited = time.time() - before
            due_in = await outbox.next_due_in_s()
            assert due_in is not None
            assert 40.0 - waited - 1 <= due_in <= 40.0

    asyncio.run(scenario())
