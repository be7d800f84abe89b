"""The sender: window, resend after ack timeout in order, reconnect, and the rate limit."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge_agent.outbox import PriorityClass

from .helpers import FakeClock, FakeServer, make_outbox, make_sender

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
