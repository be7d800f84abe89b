"""The inbox: stored before the ack, idempotent by (outlet_id, tx_id), bad bodies rejected
with reasons; acks many to a message for senders that ask (``batch_ack``), one per
transaction for the others (older agents)."""

from __future__ import annotations

import json
import queue
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from fleet_server.transactions.identity import upstream_idempotency_key
from govedge_testbed import Mosquitto
from govedge_wire import (
    MAX_ACKS_PER_MESSAGE,
    Kind,
    Transaction,
    TransactionAck,
    TransactionAcks,
    decode,
    encode,
    now_ms,
)
from tests.server.helpers import FleetServer, poll
from tests.server.txkit import ID_NUMBER, TxAgent, evaluation, submission


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("inbox")


@pytest.fixture(scope="module")
def server(broker: Mosquitto, workdir: Path) -> Iterator[FleetServer]:
    """No targets file: rows are stored and wait as pending."""
    fleet = FleetServer(
        mqtt_url=broker.url,
        database_url=f"sqlite:///{workdir / 'fleet.db'}",
        workdir=workdir,
        GOVEDGE_API_AUTH="off",  # security is tested in its own modules
    )
    fleet.start()
    yield fleet
    assert fleet.stop() == 0, fleet.stderr()


@pytest.fixture
def agent(broker: Mosquitto, outlet_id: str) -> Iterator[TxAgent]:
    fake = TxAgent(broker.url, outlet_id, session=5)
    fake.birth()
    yield fake
    fake.close()


def _rows(workdir: Path, tx_id: str) -> list[tuple[str, str]]:
    with sqlite3.connect(workdir / "fleet.db") as db:
        return db.execute("SELECT tx_id, state FROM inbox WHERE tx_id = ?", (tx_id,)).fetchall()


def test_same_tx_id_from_two_outlets_is_two_cases(
    server: FleetServer, broker: Mosquitto, agent: TxAgent, workdir: Path
) -> None:
    other = TxAgent(broker.url, f"{agent.outlet_id}-b", session=2)
    try:
        other.birth()
        tx_id = f"case-{agent.outlet_id}-0001"  # both outlets' apps use the same key scheme
        agent.tx("submission", submission(window="3"), tx_id=tx_id)
        assert agent.ack(tx_id).status == "accepted"
        other.tx("submission", submission(window="7"), tx_id=tx_id)
        assert other.ack(tx_id).status == "accepted"  # not "duplicate": another case
        other.tx("submission", submission(window="7"), tx_id=tx_id)
        assert other.ack(tx_id).status == "duplicate"  # its own resend still is
        assert _rows(workdir, tx_id) == [(tx_id, "pending"), (tx_id, "pending")]
        mine, theirs = server.get(agent.path(tx_id)), server.get(other.path(tx_id))
        assert (mine["window"], theirs["window"]) == ("3", "7")
        assert (mine["idempotency_key"], theirs["idempotency_key"]) == (
            f"{agent.outlet_id}:{tx_id}",
            f"{other.outlet_id}:{tx_id}",
        )
    finally:
        other.close()


def test_ack_arrives_after_the_row_is_committed(
    server: FleetServer, agent: TxAgent, workdir: Path
) -> None:
    tx_id = agent.tx("submission", submission())
    ack = agent.ack(tx_id)
    assert ack.status == "accepted"
    assert ack.outlet_id == agent.outlet_id
    # The ack was published after the commit, so the row is visible the moment it arrives.
    assert _rows(workdir, tx_id) == [(tx_id, "pending")]
    assert server.get(agent.path(tx_id))["state"] == "pending"


def test_duplicate_resend_is_acked_duplicate_and_stored_once(
    server: FleetServer, agent: TxAgent, workdir: Path
) -> None:
    tx_id = agent.tx("evaluation", evaluation(2))
    assert agent.ack(tx_id).status == "accepted"
    agent.tx("evaluation", evaluation(2), tx_id=tx_id)
    assert agent.ack(tx_id).status == "duplicate"
    assert len(_rows(workdir, tx_id)) == 1
    assert server.stats()["noted"].get("tx_duplicate", 0) >= 1


def test_malformed_body_is_rejected_with_a_reason_and_counted(
    server: FleetServer, agent: TxAgent, workdir: Path
) -> None:
    before = server.stats()["noted"].get("tx_rejected", 0)
    bad = submission()
    del bad["region_code"]
    tx_id = agent.tx("submission", bad)
    ack = agent.ack(tx_id)
    assert ack.status == "rejected"
    assert ack.reason is not None
    assert "region_code" in ack.reason
    unknown = agent.tx("parcel", {"x": 1})
    assert agent.ack(unknown).status == "rejected"
    assert _rows(workdir, tx_id) == []
    poll(lambda: server.stats()["noted"].get("tx_rejected", 0) >= before + 2, what="counted")
    # The applicant's personal data never reaches the server's log.
    assert ID_NUMBER not in server.stderr()
    assert "张三丰" not in server.stderr()


def test_replay_from_an_old_session_is_not_stored_twice(
    server: FleetServer, agent: TxAgent, workdir: Path
) -> None:
    tx_id = agent.tx("submission", submission())
    assert agent.ack(tx_id).status == "accepted"
    old = Transaction(
        outlet_id=agent.outlet_id, session=agent.session - 1, seq=1, tx_id=tx_id,
        tx_kind="submission", created_ts=now_ms(), body=submission(),
    )  # fmt: skip
    agent.publish(Kind.TRANSACTION, encode(old))
    # Out of order within the session (a lower seq): absorbed as a duplicate.
    agent.send(old.model_copy(update={"session": agent.session, "seq": 1}))
    assert agent.ack(tx_id).status == "duplicate"
    poll(lambda: server.stats()["rejected"].get("session_mismatch", 0) >= 1, what="replay counted")
    assert len(_rows(workdir, tx_id)) == 1


def test_outlet_cannot_send_as_another(server: FleetServer, agent: TxAgent) -> None:
    before = server.stats()["rejected"].get("outlet_mismatch", 0)
    raw = json.loads(
        encode(
            Transaction(
                outlet_id="someone-else", session=5, seq=9, tx_id="f" * 32,
                tx_kind="submission", created_ts=now_ms(), body=submission(),
            )
        )
    )  # fmt: skip
    agent.publish(Kind.TRANSACTION, json.dumps(raw).encode())
    poll(lambda: server.stats()["rejected"].get("outlet_mismatch", 0) > before, what="spoof")
    assert (
        server.http.get(f"/api/v1/outlets/someone-else/transactions/{'f' * 32}").status_code == 404
    )
    assert server.http.get(agent.path("f" * 32)).status_code == 404


def test_upstream_key_names_the_outlet_is_stable_and_ascii() -> None:
    assert upstream_idempotency_key("xh-01", "case-2024-05-01-0001") == "xh-01:case-2024-05-01-0001"
    odd = "案件 0001/第二次"  # the wire allows any 8-64 characters; a header needs ASCII
    key = upstream_idempotency_key("xh-01", odd)
    assert key.startswith("xh-01:~")
    assert key.isascii()
    assert len(key) <= 160  # inbox.idempotency_key
    assert key == upstream_idempotency_key("xh-01", odd)  # the same on every retry
    pairs = [(o, t) for o in ("xh-01", "xh-02") for t in ("a" * 8, "~" + "a" * 7, odd)]
    assert len({upstream_idempotency_key(o, t) for o, t in pairs}) == len(pairs)


# More than one TransactionAcks can carry, so a large stored batch is split.
BACKLOG = 300


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
