"""Malformed, duplicated, replayed and out-of-order ``tx`` messages, published with paho.

The real fleet server (subprocess, SQLite, targets file, catalogue) and a real HTTP
upstream; a plain paho client plays a misbehaving outlet. Everything is either
rejected with a counted reason or absorbed (acked ``duplicate``), and every valid
transaction reaches upstream exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from govedge_testbed import Mosquitto
from govedge_testbed.upstream import write_targets
from govedge_wire import MAX_PAYLOAD_BYTES, Kind, Transaction, encode, now_ms
from tests.chaos.harness import ID_NUMBER, catalogue
from tests.chaos.receiver import ChaosUpstream
from tests.server.helpers import FleetServer, poll
from tests.server.txkit import TxAgent, evaluation

TARGETS = ["zhoushan", "hangzhou", "rejecting", "hcp"]


@pytest.fixture
def upstream() -> Iterator[ChaosUpstream]:
    fake = ChaosUpstream()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def server(broker: Mosquitto, upstream: ChaosUpstream, tmp_path: Path) -> Iterator[FleetServer]:
    targets = write_targets(tmp_path / "targets.json", upstream, TARGETS)
    fleet = FleetServer(
        mqtt_url=broker.url,
        database_url=f"sqlite:///{tmp_path / 'fleet.db'}",
        workdir=tmp_path,
        GOVEDGE_UPSTREAM_TARGETS_FILE=str(targets),
        GOVEDGE_DELIVERY_POLL_INTERVAL_S="0.1",
    )
    fleet.start()
    response = fleet.http.post(
        "/api/v1/catalogue/import", content=json.dumps(catalogue()),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    yield fleet
    assert fleet.stop() == 0, fleet.stderr()


def _case(region: str = "330902") -> dict[str, Any]:
    return {
        "item_code": "ZS-1" if region.startswith("3309") else "HZ-1",
        "region_code": region,
        "applicant": {"name": "张三丰", "id_number": ID_NUMBER},
        "window": "W3",
        "clerk": "clerk-7",
    }


def _tx(agent: TxAgent, tx_id: str, body: dict[str, Any], *, seq: int, session: int | None = None,
        kind: str = "submission") -> Transaction:  # fmt: skip
    return Transaction(
        outlet_id=agent.outlet_id, session=agent.session if session is None else session,
        seq=seq, tx_id=tx_id, tx_kind=kind, created_ts=now_ms(), body=body,
    )  # fmt: skip


def test_bad_duplicated_replayed_and_reordered_tx_never_double_delivered(
    server: FleetServer, upstream: ChaosUpstream, outlet_id: str
) -> None:
    agent = TxAgent(server.mqtt_url, outlet_id, session=5)
    try:
        _abuse(server, upstream, agent)
    finally:
        agent.close()


def _abuse(server: FleetServer, upstream: ChaosUpstream, agent: TxAgent) -> None:
    before = server.stats()
    agent.birth()  # seq 0
    ok = [f"{agent.outlet_id}-ok-{n}" for n in range(6)]

    # Malformed: not JSON, not an object, missing fields, wrong outlet, too large, bad body.
    agent.publish(Kind.TRANSACTION, b"\xff{not json")
    agent.publish(Kind.TRANSACTION, b"[1, 2, 3]")
    agent.publish(
        Kind.TRANSACTION,
        json.dumps({"schema_version": 1, "kind": "tx", "outlet_id": agent.outlet_id}).encode(),
    )
    spoofed = _tx(agent, f"{agent.outlet_id}-spoof", _case(), seq=1)
    spoofed = spoofed.model_copy(update={"outlet_id": "someone-else"})
    agent.publish(Kind.TRANSACTION, encode(spoofed))
    agent.publish(Kind.TRANSACTION, b'{"pad": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}')
    bad_body = f"{agent.outlet_id}-badbody"
    agent.send(_tx(agent, bad_body, {"item_code": "ZS-1"}, seq=1))
    assert agent.ack(bad_body).status == "rejected"

    # Out of order: seq 5, 3, 4, 2 — a gap and going back, all within the session.
    for seq, tx_id in zip([5, 3, 4, 2], ok[:4], strict=True):
        agent.send(_tx(agent, tx_id, _case(), seq=seq))
    for tx_id in ok[:4]:
        assert agent.ack(tx_id).status == "accepted"

    # Duplicated: the same message three times, and the same id with a new seq.
    dup = _tx(agent, ok[4], _case("330106"), seq=6)
    for _ in range(3):
        agent.send(dup)
    agent.send(_tx(agent, ok[4], _case("330106"), seq=7))
    statuses = sorted(agent.ack(ok[4]).status for _ in range(4))
    assert statuses == ["accepted", "duplicate", "duplicate", "duplicate"]

    # An evaluation, then a replay of an old session after a new birth.
    agent.send(_tx(agent, ok[5], evaluation(1), seq=8, kind="evaluation"))
    assert agent.ack(ok[5]).status == "accepted"
    agent.session, agent.seq = 6, 0
    agent.birth()
    replayed = f"{agent.outlet_id}-replayed-new"
    agent.send(_tx(agent, ok[0], _case(), seq=9, session=5))  # old session, known id
    agent.send(_tx(agent, replayed, _case(), seq=10, session=5))  # old session, new id
    agent.send(_tx(agent, ok[1], _case(), seq=1))  # current session, known id
    assert agent.ack(ok[1]).status == "duplicate"

    poll(lambda: all(agent.key(k) in upstream.accepted for k in ok), what="all valid delivered")
    poll(lambda: server.get("/api/v1/transactions/status")["by_state"].get("pending", 0) == 0,
         what="nothing pending")  # fmt: skip
    stats = server.stats()

    def grew(section: str, reason: str) -> int:
        return int(stats[section].get(reason, 0)) - int(before[section].get(reason, 0))

    assert grew("rejected", "not_json") == 1
    assert grew("rejected", "not_object") == 1
    assert grew("rejected", "invalid") == 1
    assert grew("rejected", "outlet_mismatch") == 1
    assert grew("rejected", "too_large") == 1
    assert grew("rejected", "session_mismatch") == 2  # the replays of session 5
    assert grew("noted", "tx_rejected") == 1
    assert grew("noted", "tx_accepted") == 6
    assert grew("noted", "tx_duplicate") == 4
    assert grew("noted", "seq_gap") >= 1

    # Exactly once upstream; nothing rejected, spoofed or replayed-new got there.
    assert all(upstream.accepted_count[agent.key(key)] == 1 for key in ok)
    assert set(upstream.accepted) == {agent.key(key) for key in ok}
    assert agent.key(replayed) not in upstream.received
    assert server.get("/api/v1/transactions/status")["by_state"] == {"delivered": 6}
    row = server.get(agent.path(ok[0]))
    assert row["attempts"] == 1
