"""Transactions through the running agent: put while the broker is down, drained after.

The agent runs in-process (``Agent.run``) on a real Mosquitto the test stops and starts;
a plain paho client plays the fleet server and acks each transaction. No devices: the
agent runs without ``--simulate`` (udev on this machine finds none).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from edge_agent.daemon import Agent
from edge_agent.devices import DeviceEvent
from edge_agent.outbox import PriorityClass
from edge_agent.runtime import AgentRuntime
from edge_agent.settings import AgentSettings, load_settings
from edge_agent.transactions import file_submission, record_queue_event
from govedge_testbed import Mosquitto
from govedge_wire import (
    SERVER_STATE_TOPIC,
    AckEntry,
    ServerState,
    TransactionResult,
    encode,
    now_ms,
)
from tests.integration.fake_server import FakeServer, wait_until

SUBMISSION = {
    "item_code": "330100-0001-01",
    "region_code": "330902",
    "applicant": {"name": "测试人", "id_number": "330102199001011234"},
    "window": "3",
    "clerk": "clerk-07",
}


def _settings(broker: Mosquitto, outlet_id: str, data_dir: Path) -> AgentSettings:
    return load_settings(
        mqtt_url=broker.url,
        outlet_id=outlet_id,
        data_dir=data_dir,
        keepalive_s=5,
        reconnect_base_s=0.2,
        reconnect_cap_s=1.0,
        telemetry_interval_s=0.5,
        outbox_rate_per_s=200.0,
        local_api_port=0,  # not the default 8765: another worker's agent may hold it
    )


@asynccontextmanager
async def running_agent(broker: Mosquitto, outlet_id: str, data_dir: Path) -> AsyncIterator[Agent]:
    """An in-process agent; stopped (staged shutdown) when the block ends."""
    settings = _settings(broker, outlet_id, data_dir)
    agent = Agent(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop), name="test-agent")
    async with asyncio.timeout(15):
        while agent.assembled is None:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
    try:
        yield agent
    finally:
        stop.set()
        async with asyncio.timeout(15):
            await task


def _runtime(agent: Agent) -> AgentRuntime:
    assert agent.assembled is not None
    return agent.assembled.runtime


def _ack_applied(agent: Agent) -> bool:
    """The server's txack has been applied to the agent's outbox (any outcome but a
    failure is counted once the write is done)."""
    counts = agent.counters.snapshot()
    return any(
        n for name, n in counts.items() if name.startswith("txack_") and name != "txack_failed"
    )


def test_put_while_broker_down_then_drained_and_acked(
    private_broker: Mosquitto, outlet_id: str, tmp_path: Path
) -> None:
    async def scenario() -> tuple[list[str], FakeServer]:
        await asyncio.to_thread(private_broker.stop)
        async with running_agent(private_broker, outlet_id, tmp_path / "agent") as agent:
            runtime = _runtime(agent)
            put: list[str] = []
            for n in range(12):
                if n % 3 == 2:
                    event = {"id": f"qevent{n:026d}", "kind": "queue.call", "ticket": f"A{n:03d}"}
                    put.append(await record_queue_event(runtime, event))
                else:
                    put.append(await file_submission(runtime, SUBMISSION))
            depth = (await runtime.outbox.stats()).depth
            assert depth[PriorityClass.TRANSACTION] == 12  # all waiting: the broker is down
            await asyncio.to_thread(private_broker.start)
            server = await asyncio.to_thread(
                FakeServer, port=private_broker.port, outlet_id=outlet_id
            )
            try:
                deadline = time.monotonic() + 40
                next_nudge = time.monotonic() + 3
                while set(server.tx_ids()) != set(put) or (await runtime.outbox.stats()).depth.get(
                    PriorityClass.TRANSACTION, 0
                ):
                    if time.monotonic() > deadline:
                        raise AssertionError(f"not drained: {server.tx_ids()} of {put}")
                    if time.monotonic() > next_nudge:
                        # The agent may have published before the server subscribed (the
                        # broker drops those; the ack timeout is 30 s). As a real server does
                        # when it comes back, announce offline then online: the agent then
                        # resends everything unacked at once (docs/protocol.md, rule 8).
                        next_nudge = time.monotonic() + 4
                        ts = now_ms()
                        for online in (False, True):
                            state = ServerState(server_id="fake", online=online, ts=ts)
                            server.client.publish(SERVER_STATE_TOPIC, encode(state), qos=1)
                    await asyncio.sleep(0.05)
            finally:
                await asyncio.to_thread(server.close)
            return put, server

    put, server = asyncio.run(scenario())
    assert set(server.tx_ids()) == set(put)
    firsts = [m.tx_id for m in server.first_sends()]
    assert firsts == [tx for tx in put if tx in firsts], "first sends left in put order"
    kinds = {m.tx_id: m.tx_kind for m in server.received}
    assert [kinds[tx] for tx in put].count("queue.call") == 4
    assert kinds[put[0]] == "submission"


def test_txresult_downlink_reaches_the_transaction_events_once(
    broker: Mosquitto, outlet_id: str, tmp_path: Path
) -> None:
    async def scenario() -> list[DeviceEvent]:
        server = await asyncio.to_thread(FakeServer, port=broker.port, outlet_id=outlet_id)
        try:
            async with running_agent(broker, outlet_id, tmp_path / "agent") as agent:
                runtime = _runtime(agent)
                tx_id = await file_submission(runtime, SUBMISSION)
                await asyncio.to_thread(
                    wait_until, lambda: tx_id in server.tx_ids(), timeout=10, what="the tx"
                )
                # A result that comes while the tx's ack is still being written to the
                # outbox is held until then (the clerk app hears "acked" first), so the
                # marker below could overtake it: wait until the ack is applied.
                await asyncio.to_thread(
                    wait_until, lambda: _ack_applied(agent), timeout=10, what="the ack"
                )
                with contextlib.closing(runtime.transactions.subscribe()) as events:
                    result = TransactionResult(
                        outlet_id=outlet_id,
                        session=0,
                        seq=0,
                        tx_id=tx_id,
                        outcome="delivered",
                        case_number="ZJ330902-2024-000123",
                    )
                    for _ in range(2):  # the server may send it twice
                        await asyncio.to_thread(server.send_result, result)
                    # Results are handled in order: once this one shows, the resend has been.
                    marker = result.model_copy(update={"tx_id": "marker-after-resend"})
                    await asyncio.to_thread(server.send_result, marker)
                    seen = [await events.get(timeout_s=10)]
                    while (
                        seen[-1].data["tx_id"] != marker.tx_id
                        or seen[-1].name != "transaction.result"
                    ):
                        seen.append(await events.get(timeout_s=10))
                # The server's ack may land after the subscription: only results count here.
                return [
                    e for e in seen if e.data["tx_id"] == tx_id and e.name != "transaction.acked"
                ]
        finally:
            await asyncio.to_thread(server.close)

    events = asyncio.run(scenario())
    assert len(events) == 1, events
    assert events[0].name == "transaction.result"
    assert events[0].device_id == "outbox"
    assert events[0].data["outcome"] == "delivered"
    assert events[0].data["case_number"] == "ZJ330902-2024-000123"


def test_the_servers_ack_is_told_once_as_transaction_acked(
    broker: Mosquitto, outlet_id: str, tmp_path: Path
) -> None:
    """The fleet server stored it: clerk apps see ``transaction.acked`` (docs/local-api.md)."""

    async def scenario() -> tuple[str, list[DeviceEvent]]:
        server = await asyncio.to_thread(FakeServer, port=broker.port, outlet_id=outlet_id)
        try:
            async with running_agent(broker, outlet_id, tmp_path / "agent") as agent:
                runtime = _runtime(agent)
                with contextlib.closing(runtime.transactions.subscribe()) as events:
                    tx_id = await file_submission(runtime, SUBMISSION)
                    seen = [await events.get(timeout_s=15)]
                    while seen[-1].name != "transaction.acked":
                        seen.append(await events.get(timeout_s=15))
                    # A result sent afterwards proves no second ack event came before it.
                    result = TransactionResult(
                        outlet_id=outlet_id, session=0, seq=0, tx_id=tx_id, outcome="delivered"
                    )
                    await asyncio.to_thread(server.send_result, result)
                    seen.append(await events.get(timeout_s=10))
                    while seen[-1].name != "transaction.result":
                        seen.append(await events.get(timeout_s=10))
                return tx_id, seen
        finally:
            await asyncio.to_thread(server.close)

    tx_id, events = asyncio.run(scenario())
    acked = [e for e in events if e.name == "transaction.acked"]
    assert len(acked) == 1, events
    assert acked[0].device_id == "outbox"
    assert acked[0].data["tx_id"] == tx_id
    assert acked[0].data["status"] == "accepted"


def test_a_result_right_behind_its_ack_is_told_after_the_ack(
    broker: Mosquitto, outlet_id: str, tmp_path: Path
) -> None:
    """A fast upstream's result can reach the agent while the ack is still being applied
    to the outbox; clerk apps still see ``transaction.acked`` first (docs/local-api.md)."""

    async def scenario() -> list[str]:
        server = await asyncio.to_thread(
            FakeServer, port=broker.port, outlet_id=outlet_id, ack=False
        )
        try:
            async with running_agent(broker, outlet_id, tmp_path / "agent") as agent:
                runtime = _runtime(agent)
                names: list[str] = []
                with contextlib.closing(runtime.transactions.subscribe()) as events:
                    for n in range(5):
                        tx_id = await file_submission(runtime, SUBMISSION)
                        await asyncio.to_thread(
                            wait_until, lambda t=tx_id: t in server.tx_ids(), timeout=10,
                            what=f"transaction {n}",
                        )  # fmt: skip
                        result = TransactionResult(
                            outlet_id=outlet_id, session=0, seq=0, tx_id=tx_id,
                            outcome="delivered", case_number=f"ZJ-{n}",
                        )  # fmt: skip
                        await asyncio.to_thread(server.send_ack_and_result, tx_id, result)
                        while True:
                            event = await events.get(timeout_s=10)
                            if event.data.get("tx_id") != tx_id:
                                continue
                            names.append(event.name)
                            if event.name == "transaction.result":
                                break
                return names
        finally:
            await asyncio.to_thread(server.close)

    names = asyncio.run(scenario())
    assert names == ["transaction.acked", "transaction.result"] * 5, names


def test_acks_many_to_a_message_each_take_their_entry_out_once(
    broker: Mosquitto, outlet_id: str, tmp_path: Path
) -> None:
    """The agent asks for batched acks (``batch_ack``); one ``TransactionAcks`` answering
    six transactions takes each out of the outbox as its status says (accepted and
    duplicate deleted, rejected into the dead letters), tells each once as
    ``transaction.acked``, and a result right behind the batch is told after its ack."""

    async def scenario() -> tuple[list[str], list[DeviceEvent], dict[str, int], int]:
        server = await asyncio.to_thread(
            FakeServer, port=broker.port, outlet_id=outlet_id, ack=False
        )
        try:
            async with running_agent(broker, outlet_id, tmp_path / "agent") as agent:
                runtime = _runtime(agent)
                put = [await file_submission(runtime, SUBMISSION) for _ in range(6)]
                await asyncio.to_thread(
                    wait_until, lambda: set(put) <= set(server.tx_ids()), timeout=15,
                    what="the six transactions",
                )  # fmt: skip
                assert all(m.batch_ack for m in server.received)
                statuses = ["accepted"] * 4 + ["duplicate", "rejected"]
                acks = [
                    AckEntry(
                        tx_id=tx_id,
                        status=status,  # type: ignore[arg-type]
                        reason="item_code unknown" if status == "rejected" else None,
                    )
                    for tx_id, status in zip(put, statuses, strict=True)
                ]
                result = TransactionResult(
                    outlet_id=outlet_id, session=0, seq=0, tx_id=put[0],
                    outcome="delivered", case_number="ZJ-BATCH-1",
                )  # fmt: skip
                seen: list[DeviceEvent] = []
                with contextlib.closing(runtime.transactions.subscribe()) as events:
                    await asyncio.to_thread(server.send_acks, acks, result)
                    while sum(e.name == "transaction.acked" for e in seen) < 6 or not any(
                        e.name == "transaction.result" for e in seen
                    ):
                        seen.append(await events.get(timeout_s=15))
                stats = await runtime.outbox.stats()
                return put, seen, dict(stats.depth), stats.dead_letters
        finally:
            await asyncio.to_thread(server.close)

    put, events, depth, dead_letters = asyncio.run(scenario())
    acked = {e.data["tx_id"]: e.data["status"] for e in events if e.name == "transaction.acked"}
    assert acked == dict(zip(put, ["accepted"] * 4 + ["duplicate", "rejected"], strict=True))
    assert len([e for e in events if e.name == "transaction.acked"]) == 6  # each told once
    first = [e.name for e in events if e.data["tx_id"] == put[0]]
    assert first == ["transaction.acked", "transaction.result"]
    assert depth.get(PriorityClass.TRANSACTION, 0) == 0
    assert dead_letters == 1
