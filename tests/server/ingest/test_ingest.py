"""The server as one real process against a real Mosquitto, driven by a fake agent."""

from __future__ import annotations

import gc
import json
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from govedge_testbed import Mosquitto
from govedge_wire import (
    MAX_PAYLOAD_BYTES,
    SERVER_STATE_TOPIC,
    Command,
    Kind,
    ServerState,
    Telemetry,
    decode,
    encode,
    topic_for,
)
from tests.server.helpers import FakeAgent, FleetServer, Subscriber, poll


@pytest.fixture(scope="module")
def server(broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetServer]:
    """One fleet server on SQLite for this module's tests (each uses its own outlet)."""
    workdir = tmp_path_factory.mktemp("fleet")
    fleet = FleetServer(
        mqtt_url=broker.url, database_url=f"sqlite:///{workdir / 'fleet.db'}", workdir=workdir
    )
    fleet.start()
    yield fleet
    assert fleet.stop() == 0, fleet.stderr()


@pytest.fixture
def agent(broker: Mosquitto, outlet_id: str) -> Iterator[FakeAgent]:
    fake = FakeAgent(broker.url, outlet_id, session=7)
    yield fake
    fake.close()


def _rejected(server: FleetServer, reason: str) -> int:
    count: int = server.stats()["rejected"].get(reason, 0)
    return count


def test_birth_shows_online_then_death_offline(server: FleetServer, agent: FakeAgent) -> None:
    assert server.outlet(agent.outlet_id) is None
    agent.birth()
    row = server.wait_state(agent.outlet_id, "online")
    assert row["session"] == 7
    assert row["last_seq"] == 0
    assert row["agent_version"] == "0.1.0-test"
    assert row["hostname"] == "outlet-pc-1"
    assert row["os"] == "Debian 12"
    assert row["config_version"] == 3
    assert row["devices"][0]["device_id"] == "reader-1"
    assert row["state_since"].endswith("Z")
    listed = {item["outlet_id"]: item for item in server.get("/api/v1/outlets")["items"]}
    assert listed[agent.outlet_id]["state"] == "online"
    online = server.get("/api/v1/outlets?state=online")["items"]
    assert agent.outlet_id in {item["outlet_id"] for item in online}

    agent.telemetry(cpu_percent=42.0)
    poll(lambda: (server.outlet(agent.outlet_id) or {}).get("last_seq") == 1, what="seq 1")
    assert server.outlet(agent.outlet_id)["last_metrics"] == {"cpu_percent": 42.0}  # type: ignore[index]

    agent.death(session=6)  # a late will from an older connection
    poll(lambda: _rejected(server, "late_will") >= 1, what="late_will counted")
    assert server.outlet(agent.outlet_id)["state"] == "online"  # type: ignore[index]
    agent.death()
    server.wait_state(agent.outlet_id, "offline")


def test_unknown_outlet_is_404_json(server: FleetServer) -> None:
    response = server.http.get("/api/v1/outlets/no-such-outlet")
    assert response.status_code == 404
    assert "not found" in response.json()["detail"]
    assert server.get("/healthz") == {"status": "ok"}


def test_bad_messages_are_counted_and_ingest_goes_on(server: FleetServer, agent: FakeAgent) -> None:
    agent.birth()
    server.wait_state(agent.outlet_id, "online")
    before = server.stats()
    good = json.loads(encode(Telemetry(outlet_id=agent.outlet_id, session=7, seq=1)))
    agent.publish(Kind.TELEMETRY, b"\xff\xfe not json at all")
    agent.publish(Kind.TELEMETRY, b"x" * (MAX_PAYLOAD_BYTES + 1))
    agent.publish(Kind.TELEMETRY, json.dumps(good | {"schema_version": 2}).encode())
    agent.publish(Kind.TELEMETRY, json.dumps(good | {"outlet_id": "someone-else"}).encode())
    agent.publish(Kind.TELEMETRY, b"[1, 2]")
    agent.telemetry(cpu_percent=1.0)  # seq 1, still valid after all of that
    poll(
        lambda: (server.outlet(agent.outlet_id) or {}).get("last_metrics") == {"cpu_percent": 1.0},
        what="valid telemetry after bad ones",
    )
    after = server.stats()
    for reason in ("not_json", "too_large", "unsupported_schema", "outlet_mismatch", "not_object"):
        assert after["rejected"].get(reason, 0) == before["rejected"].get(reason, 0) + 1, reason
    assert after["received"] >= before["received"] + 6
    assert after["accepted"] >= before["accepted"] + 1
    assert after["rejected"].get("internal_error", 0) == 0
    assert after["broker_connected"] is True
    assert server.ready()


def test_data_before_birth_requests_rebirth(
    server: FleetServer, broker: Mosquitto, agent: FakeAgent
) -> None:
    commands = Subscriber(broker.url, topic_for(agent.outlet_id, Kind.COMMAND))
    try:
        agent.telemetry()
        message = commands.get()
        command = decode(message.topic, bytes(message.payload))
        assert isinstance(command, Command)
        assert command.name == "rebirth"
        assert command.outlet_id == agent.outlet_id
        assert command.expires_ts is not None
        assert not message.retain
        assert server.outlet(agent.outlet_id) is None
        assert server.stats()["rejected"]["no_birth"] >= 1
    finally:
        commands.close()


def test_seq_gap_requests_rebirth(server: FleetServer, broker: Mosquitto, agent: FakeAgent) -> None:
    commands = Subscriber(broker.url, topic_for(agent.outlet_id, Kind.COMMAND))
    try:
        agent.birth()
        server.wait_state(agent.outlet_id, "online")
        before = server.stats()
        agent.telemetry(seq=5)
        message = commands.get()
        command = decode(message.topic, bytes(message.payload))
        assert isinstance(command, Command)
        assert command.name == "rebirth"
        stats = server.stats()
        assert stats["noted"]["seq_gap"] == before["noted"].get("seq_gap", 0) + 1
        assert stats["rebirths_requested"] == before["rebirths_requested"] + 1
        poll(lambda: (server.outlet(agent.outlet_id) or {}).get("last_seq") == 5, what="seq 5")
        # The agent answers with a birth in the same session; seq continues.
        agent.birth(rebirth=True)
        agent.telemetry()
        poll(lambda: (server.outlet(agent.outlet_id) or {}).get("last_seq") == 7, what="seq 7")
        assert server.stats()["noted"]["seq_gap"] == before["noted"].get("seq_gap", 0) + 1
    finally:
        commands.close()


def test_server_state_is_retained_online(server: FleetServer, broker: Mosquitto) -> None:
    state = Subscriber(broker.url, SERVER_STATE_TOPIC)
    try:
        message = state.get()
        decoded = decode(message.topic, bytes(message.payload))
        assert message.retain
        assert isinstance(decoded, ServerState)
        assert decoded.online
    finally:
        state.close()


def test_broker_loss_makes_outlets_stale_until_heard(
    private_broker: Mosquitto, outlet_id: str, tmp_path: Path
) -> None:
    server = FleetServer(
        mqtt_url=private_broker.url,
        database_url=f"sqlite:///{tmp_path / 'fleet.db'}",
        workdir=tmp_path,
    )
    server.start()
    agent = FakeAgent(private_broker.url, outlet_id, session=1)
    try:
        agent.birth()
        server.wait_state(outlet_id, "online")
        agent.close()
        private_broker.kill()
        server.wait_state(outlet_id, "stale")
        assert not server.ready()
        assert server.stats()["broker_connected"] is False
        private_broker.start()
        poll(server.ready, timeout=45, what="server reconnected")

        # The agent reconnects (new session) and births once it sees the server online.
        agent = FakeAgent(private_broker.url, outlet_id, session=2)
        state = Subscriber(private_broker.url, SERVER_STATE_TOPIC)
        try:
            seen = decode(SERVER_STATE_TOPIC, bytes(state.get().payload))
            assert isinstance(seen, ServerState)
            assert seen.online
        finally:
            state.close()
        agent.birth()
        row = server.wait_state(outlet_id, "online")
        assert row["session"] == 2
    finally:
        agent.close()
        assert server.stop() == 0, server.stderr()
    # After a clean stop the retained state says offline.
    state = Subscriber(private_broker.url, SERVER_STATE_TOPIC)
    try:
        seen = decode(SERVER_STATE_TOPIC, bytes(state.get().payload))
        assert isinstance(seen, ServerState)
        assert not seen.online
    finally:
        state.close()


def test_restart_keeps_registry_and_marks_online_stale_until_heard(
    broker: Mosquitto, outlet_id: str, tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'fleet.db'}"
    agent = FakeAgent(broker.url, outlet_id, session=4)
    try:
        first = FleetServer(mqtt_url=broker.url, database_url=database_url, workdir=tmp_path)
        first.start()
        try:
            agent.birth()
            first.wait_state(outlet_id, "online")
        finally:
            assert first.stop() == 0, first.stderr()
        second = FleetServer(mqtt_url=broker.url, database_url=database_url, workdir=tmp_path)
        second.start()
        try:
            row = second.outlet(outlet_id)
            assert row is not None
            assert (row["state"], row["session"]) == ("stale", 4)
            agent.telemetry()  # same session, next seq: heard again
            row = second.wait_state(outlet_id, "online")
            assert row["last_seq"] == 1
        finally:
            assert second.stop() == 0, second.stderr()
    finally:
        agent.close()


def test_broker_socket_has_tcp_nodelay(broker: Mosquitto, tmp_path: Path) -> None:
    """Acks and commands are small writes after reads: Nagle would hold each one back."""
    from fleet_server.db import make_engine, make_sessionmaker
    from fleet_server.ingest import Ingest
    from fleet_server.migrate import upgrade
    from fleet_server.settings import Settings

    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    engine = make_engine(url)
    upgrade(engine)
    ingest = Ingest(
        Settings(database_url=url, mqtt_url=broker.url, pki_dir=tmp_path / "pki"),
        sessions=make_sessionmaker(engine),
    )
    ingest.start()
    try:
        stats = ingest.stats
        poll(lambda: stats.broker_connected, what="subscribed")
        sock = ingest._client.socket()  # the live connection's socket
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        ingest.stop(timeout=5)
        engine.dispose()
        # paho keeps its loop's socketpair open after loop_stop until the client is
        # collected, and the client and the ingest refer to each other: collect them here.
        del ingest
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
