"""Two ``fleet-server`` workers in one MQTT share group, one PostgreSQL, one Mosquitto.

The broker hands each message of ``$share/{group}/govedge/v1/+/up/+`` to one worker,
round-robin per message, so every outlet's births, telemetry, transactions and wills are
split between the workers. What an operator sees must not depend on that: healthy
agents online with their telemetry stored and no rebirth requests, every transaction
acknowledged exactly once, a killed agent offline (its will reaches one worker only)
and online again after a restart (its new birth reaches one worker only), and a dead
outlet still offline when the workers lose the broker.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import func, select

import govedge_wire as wire
from fleet_server.db import make_engine
from fleet_server.models import InboxEntry
from govedge_testbed import Mosquitto
from tests.e2e.conftest import KEEPALIVE_S, Agent
from tests.server.helpers import FleetServer, mqtt_client, poll
from tests.server.txkit import TxAgent

pytestmark = pytest.mark.postgres

# The broker declares a client dead after 1.5 x keepalive; allow for scheduling noise.
WILL_DEADLINE_S = 1.5 * KEEPALIVE_S + 10
REJECTS = ("no_birth", "session_mismatch", "late_will", "after_death")


class Downlink:
    """Counts what the servers send to outlets: rebirth commands and transaction acks."""

    def __init__(self, mqtt_url: str) -> None:
        self._lock = threading.Lock()
        self.rebirths: Counter[str] = Counter()
        self.acks: Counter[str] = Counter()
        self.ack_status: dict[str, str] = {}
        self._client = mqtt_client(mqtt_url, name="downlink")
        subscribed = threading.Event()
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_args: subscribed.set()
        self._client.subscribe([("govedge/v1/+/down/cmd", 1), ("govedge/v1/+/down/txack", 1)])
        assert subscribed.wait(10)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        decoded = wire.decode(message.topic, bytes(message.payload))
        with self._lock:
            if isinstance(decoded, wire.Command) and decoded.name == "rebirth":
                self.rebirths[decoded.outlet_id] += 1
            elif isinstance(decoded, wire.TransactionAck):
                self.acks[decoded.tx_id] += 1
                self.ack_status[decoded.tx_id] = decoded.status

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def workers(
    private_broker: Mosquitto, postgres_url: str, tmp_path: Path
) -> Iterator[list[FleetServer]]:
    env = {
        "GOVEDGE_API_AUTH": "off",
        "GOVEDGE_PKI_DIR": str(tmp_path / "pki"),
        "GOVEDGE_MQTT_SHARE_GROUP": "fleet",
    }
    servers = [
        FleetServer(mqtt_url=private_broker.url, database_url=postgres_url, workdir=tmp_path, **env)
        for _ in range(2)
    ]
    try:
        for server in servers:  # one after the other: each upgrades the schema first
            server.start()
        yield servers
    finally:
        for server in servers:
            if server.proc is not None and server.proc.poll() is None:
                assert server.stop() == 0, server.stderr()


def _rejects(servers: list[FleetServer]) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for server in servers:
        for reason, count in server.stats()["rejected"].items():
            if reason in REJECTS:
                totals[reason] += count
    return dict(totals)


def _state_everywhere(servers: list[FleetServer], outlet_id: str, state: str) -> bool:
    return all((s.outlet(outlet_id) or {}).get("state") == state for s in servers)


def test_two_workers_in_a_share_group_agree_on_presence_telemetry_and_transactions(
    workers: list[FleetServer], private_broker: Mosquitto, postgres_url: str, tmp_path: Path
) -> None:
    downlink = Downlink(private_broker.url)
    agents = [
        Agent(
            outlet_id=f"shared-{name}-{uuid.uuid4().hex[:6]}",
            data_dir=tmp_path / "agents" / name,
            mqtt_url=private_broker.url,
            log=tmp_path / f"agent-{name}.log",
        )
        for name in ("a", "b")
    ]
    tx_agent: TxAgent | None = None
    db = make_engine(postgres_url)
    try:
        for agent in agents:
            agent.start()
        poll(lambda: all(_state_everywhere(workers, a.outlet_id, "online") for a in agents),
             timeout=30, what="agents online on both workers")  # fmt: skip

        # Telemetry every 0.5 s from each agent: wait until both workers have taken a
        # good share of it (the split really happens), then look at what they did.
        poll(lambda: all(s.stats()["received"] >= 15 for s in workers), timeout=60,
             what="both workers receiving")  # fmt: skip
        assert _rejects(workers) == {}, [s.stats() for s in workers]
        assert sum(s.stats()["rebirths_requested"] for s in workers) == 0
        assert sum(downlink.rebirths.values()) == 0, downlink.rebirths
        for agent in agents:
            row = workers[0].outlet(agent.outlet_id)
            assert row is not None
            assert row["last_metrics"]
            assert row["last_metrics"]["cpu_percent"] >= 0

        # Transactions from one more outlet: each stored once and acknowledged once.
        tx_agent = TxAgent(private_broker.url, f"shared-tx-{uuid.uuid4().hex[:6]}")
        tx_agent.birth()
        tx_ids = [tx_agent.tx("queue_event", {"kind": "ticket.issued"}) for _ in range(20)]
        poll(lambda: all(downlink.acks[t] >= 1 for t in tx_ids), timeout=30, what="all acked")
        time.sleep(1.0)  # a second ack of any of them would have arrived by now
        assert {t: downlink.acks[t] for t in tx_ids} == dict.fromkeys(tx_ids, 1)
        assert {downlink.ack_status[t] for t in tx_ids} == {"accepted"}
        with db.connect() as conn:
            stored = conn.scalar(
                select(func.count()).select_from(InboxEntry)
                .where(InboxEntry.outlet_id == tx_agent.outlet_id)
            )  # fmt: skip
        assert stored == len(tx_ids)
        # The worker that missed the birth took it from the database (possibly after
        # waiting for the other worker's commit) instead of refusing the transactions.
        reloaded = sum(s.stats()["noted"].get("presence_reloaded", 0) for s in workers)
        assert reloaded >= 1, [s.stats() for s in workers]

        # A killed agent: its will reaches one worker; both show it offline, and stay so.
        killed, alive = agents
        first = workers[0].outlet(killed.outlet_id)
        assert first is not None
        killed.signal(signal.SIGKILL)
        killed.wait(timeout=5)
        poll(lambda: _state_everywhere(workers, killed.outlet_id, "offline"),
             timeout=WILL_DEADLINE_S, what="killed agent offline on both workers")  # fmt: skip
        time.sleep(2.0)  # many batches of both workers: none may bring it back
        assert _state_everywhere(workers, killed.outlet_id, "offline")
        assert _state_everywhere(workers, alive.outlet_id, "online")

        # Restarted: a new session whose birth reaches one worker only.
        killed.start()
        poll(lambda: (r := workers[1].outlet(killed.outlet_id)) and r["state"] == "online"
             and r["session"] == first["session"] + 1, timeout=30,
             what="restarted agent online in its new session")  # fmt: skip
        received = {s.url: s.stats()["received"] for s in workers}
        poll(lambda: all(s.stats()["received"] >= received[s.url] + 8 for s in workers),
             timeout=60, what="more telemetry on both workers")  # fmt: skip
        assert _rejects(workers) == {}, [s.stats() for s in workers]
        assert sum(downlink.rebirths.values()) == 0, downlink.rebirths
        assert _state_everywhere(workers, killed.outlet_id, "online")

        # The other agent dies too; then the broker goes away under both workers. Each
        # worker makes what it holds online stale, but the worker that did not get the
        # will still holds that outlet online in memory: it must not write it back.
        alive.signal(signal.SIGKILL)
        alive.wait(timeout=5)
        poll(lambda: _state_everywhere(workers, alive.outlet_id, "offline"),
             timeout=WILL_DEADLINE_S, what="second killed agent offline")  # fmt: skip
        private_broker.kill()
        poll(lambda: _state_everywhere(workers, killed.outlet_id, "stale"), timeout=15,
             what="the live outlet stale on both workers")  # fmt: skip
        time.sleep(1.0)  # both workers' broker-loss batches are written by now
        assert _state_everywhere(workers, alive.outlet_id, "offline")
        assert _state_everywhere(workers, tx_agent.outlet_id, "stale")
    finally:
        for agent in agents:
            agent.stop()
        if tx_agent is not None:
            tx_agent.close()
        downlink.close()
        db.dispose()
