"""Batched transaction acks: a sender that says ``batch_ack`` gets its acks many to a
message (``TransactionAcks``); one that does not (an older agent) gets one
``TransactionAck`` per transaction, as before. Real fleet server, real Mosquitto."""

from __future__ import annotations

import queue
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from govedge_testbed import Mosquitto
from govedge_wire import (
    MAX_ACKS_PER_MESSAGE,
    TransactionAck,
    TransactionAcks,
    decode,
)
from tests.server.helpers import FleetServer
from tests.server.txkit import TxAgent, evaluation

# More than one TransactionAcks can carry, so a large stored batch is split.
BACKLOG = 300


@pytest.fixture(scope="module")
def server(broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetServer]:
    workdir: Path = tmp_path_factory.mktemp("batched-acks")
    fleet = FleetServer(
        mqtt_url=broker.url,
        database_url=f"sqlite:///{workdir / 'fleet.db'}",
        workdir=workdir,
        GOVEDGE_API_AUTH="off",  # security is tested in its own modules
    )
    fleet.start()
    yield fleet
    assert fleet.stop() == 0, fleet.stderr()


def _acks_until(agent: TxAgent, count: int, *, timeout: float = 60.0) -> list[object]:
    """Every message on the outlet's ack topic until ``count`` acks came in all."""
    messages: list[object] = []
    acks = 0
    deadline = time.monotonic() + timeout
    while acks < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{acks} of {count} acks came"
        try:
            message: mqtt.MQTTMessage = agent.down.get(timeout=remaining)
        except queue.Empty:
            continue
        if not message.topic.endswith("/down/txack"):
            continue
        decoded = decode(message.topic, bytes(message.payload))
        messages.append(decoded)
        if isinstance(decoded, TransactionAcks):
            acks += len(decoded.acks)
        else:
            assert isinstance(decoded, TransactionAck)
            acks += 1
    return messages


def _statuses(messages: list[object]) -> Counter[tuple[str, str, str | None]]:
    seen: Counter[tuple[str, str, str | None]] = Counter()
    for message in messages:
        if isinstance(message, TransactionAcks):
            seen.update((e.tx_id, e.status, e.reason) for e in message.acks)
        elif isinstance(message, TransactionAck):
            seen[(message.tx_id, message.status, message.reason)] += 1
    return seen


@pytest.mark.timeout(120)
def test_a_backlog_is_acked_many_to_a_message_each_once_with_its_status(
    server: FleetServer, broker: Mosquitto, outlet_id: str
) -> None:
    agent = TxAgent(broker.url, outlet_id, session=3)
    try:
        agent.birth()
        sent = [agent.tx("evaluation", evaluation(2), batch_ack=True) for _ in range(BACKLOG)]
        bad = agent.tx("evaluation", evaluation(2) | {"level_code": 9}, batch_ack=True)
        resent = sent[0]
        agent.tx("evaluation", evaluation(2), tx_id=resent, batch_ack=True)
        messages = _acks_until(agent, BACKLOG + 2)
    finally:
        agent.close()

    statuses = _statuses(messages)
    # Each transaction acked exactly once, with what the server did with it.
    for tx_id in sent[1:]:
        assert statuses[(tx_id, "accepted", None)] == 1, tx_id
    assert statuses[(resent, "accepted", None)] == 1
    assert statuses[(resent, "duplicate", None)] == 1
    [(_, status, reason)] = [key for key in statuses if key[0] == bad]
    assert status == "rejected"
    assert reason
    assert sum(statuses.values()) == BACKLOG + 2
    # Many to a message: far fewer messages than transactions, none over the limit, and
    # every message is this outlet's, from the server's session.
    batches = [m for m in messages if isinstance(m, TransactionAcks)]
    assert batches, "no batched acks at all"
    assert len(messages) < BACKLOG / 4, len(messages)
    assert all(1 < len(m.acks) <= MAX_ACKS_PER_MESSAGE for m in batches)
    assert {m.outlet_id for m in batches} == {outlet_id}  # type: ignore[attr-defined]
    assert server.stats()["noted"].get("tx_rejected", 0) >= 1


@pytest.mark.timeout(120)
def test_an_older_agent_gets_one_ack_per_transaction(
    server: FleetServer, broker: Mosquitto, outlet_id: str
) -> None:
    agent = TxAgent(broker.url, outlet_id, session=4)
    try:
        agent.birth()
        sent = [agent.tx("evaluation", evaluation(3)) for _ in range(50)]
        messages = _acks_until(agent, len(sent))
    finally:
        agent.close()
    assert all(isinstance(m, TransactionAck) for m in messages)
    assert sorted(m.tx_id for m in messages) == sorted(sent)  # type: ignore[attr-defined]
    assert {m.status for m in messages} == {"accepted"}  # type: ignore[attr-defined]
