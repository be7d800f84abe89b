"""A thief holding a revoked outlet's key (docs/security.md, "Revocation").

The outlet is enrolled for real (``edge-agent enroll`` against ``fleet-server run``); the
thief connects with that same certificate and key under a client id of its own, which the
old client-id takeover never reached. The broker runs the config ``fleet-server
broker-config`` generates (dynamic-security plugin included) on this machine's Mosquitto.
"""

from __future__ import annotations

import queue
import re
import sqlite3
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from fleet_server.pki import FleetCA
from govedge_testbed import Mosquitto
from govedge_wire import (
    Birth,
    Kind,
    Message,
    Transaction,
    TransactionAck,
    agent_client_id,
    decode,
    encode,
    now_ms,
    topic_for,
)
from tests.e2e.conftest import BIN, Server, poll, start_server, stop_process
from tests.security.conftest import ClientFiles, TlsClient, issue_outlet
from tests.security.test_revocation_reload import Broker, _refused, broker  # noqa: F401
from tests.server.txkit import evaluation, submission

OUTLET = "outlet-stolen-1"


@pytest.fixture
def thief_id() -> str:
    return f"thief-{uuid.uuid4().hex[:8]}"


def _enroll(server: Server, data_dir: Path) -> ClientFiles:
    """Enroll ``OUTLET`` with the real agent command; its key and certificate files."""
    created = httpx.post(
        f"{server.url}/api/v1/enrollments",
        json={"outlet_id": OUTLET, "ttl_s": 600},
        headers=server.headers,
        timeout=10,
    )
    assert created.status_code == httpx.codes.CREATED, created.text
    result = subprocess.run(
        [str(BIN / "edge-agent"), "enroll", "--server", server.url,
         "--token", created.json()["token"], "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    tls = data_dir / "tls"
    return ClientFiles(ca=tls / "ca.pem", cert=tls / "cert.pem", key=tls / "key.pem")


def _revoke(server: Server) -> dict[str, Any]:
    revoked = httpx.post(
        f"{server.url}/api/v1/outlets/{OUTLET}/revoke", headers=server.headers, timeout=60
    )
    assert revoked.status_code == httpx.codes.OK, revoked.text
    answer: dict[str, Any] = revoked.json()
    return answer


class Sender:
    """Sends hand-made uplinks of ``OUTLET`` over a TLS client, and reads its acks."""

    def __init__(self, client: TlsClient, *, session: int) -> None:
        self.client = client
        self.session = session
        self.seq = 0
        assert client.subscribe(f"govedge/v1/{OUTLET}/down/#") == [1]

    def send(self, message: Message) -> None:
        assert self.client.publish(topic_for(OUTLET, Kind(message.kind)), encode(message)) == 0

    def _next(self) -> int:
        self.seq += 1
        return self.seq - 1

    def birth(self) -> None:
        self.send(
            Birth(
                outlet_id=OUTLET, session=self.session, seq=self._next(),
                agent_version="0.1.0-test", hostname="pc", os="Debian 12", devices=[],
                config_version=1, telemetry_interval_s=5.0, keepalive_s=30,
            )
        )  # fmt: skip

    def tx(self, tx_kind: str, body: dict[str, Any]) -> str:
        tx_id = uuid.uuid4().hex
        self.send(
            Transaction(
                outlet_id=OUTLET, session=self.session, seq=self._next(),
                tx_id=tx_id, tx_kind=tx_kind, created_ts=now_ms(), body=body,
            )
        )  # fmt: skip
        return tx_id

    def acks(self) -> dict[str, str]:
        """Every transaction ack received so far: ``{tx_id: status}``."""
        found: dict[str, str] = {}
        while True:
            try:
                message: mqtt.MQTTMessage = self.client.messages.get_nowait()
            except queue.Empty:
                return found
            decoded = decode(message.topic, bytes(message.payload))
            if isinstance(decoded, TransactionAck):
                found[decoded.tx_id] = decoded.status


def _inbox(database: Path) -> set[str]:
    with sqlite3.connect(database) as db:
        return {row[0] for row in db.execute("SELECT tx_id FROM inbox")}


def _alerts(server: Server) -> set[str]:
    rows = httpx.get(
        f"{server.url}/api/v1/alerts?outlet_id={OUTLET}", headers=server.headers, timeout=5
    ).json()
    return {row["rule"] for row in rows}


@pytest.mark.timeout(120)
def test_revoke_disconnects_a_thief_under_another_client_id(
    broker: Broker,  # noqa: F811
    fleet_ca: FleetCA,
    pki_dir: Path,
    tmp_path: Path,
    thief_id: str,
) -> None:
    server = start_server(
        broker.mosquitto.url,
        f"sqlite:///{tmp_path / 'fleet.db'}",
        tmp_path / "server.log",
        env={"GOVEDGE_PKI_DIR": str(pki_dir), "GOVEDGE_BROKER_PID_FILE": str(broker.pid_file)},
    )
    clients: list[TlsClient] = []
    try:
        stolen = _enroll(server, tmp_path / "agent")
        thief = TlsClient(broker.mosquitto, stolen, client_id=thief_id)
        other = TlsClient(
            broker.mosquitto,
            issue_outlet(fleet_ca, "outlet-bystander", tmp_path / "other"),
            client_id=agent_client_id("outlet-bystander"),
        )
        clients += [thief, other]
        assert thief.wait_connected() == 0
        assert other.wait_connected() == 0
        offset = broker.log_size()

        answer = _revoke(server)
        assert answer["broker_reloaded"] is True, answer
        assert answer["session_ended"] is True, answer
        assert "disabled at the broker" in answer["broker_detail"], answer

        # The thief's connection is closed by identity, not by client id ...
        poll(lambda: not thief.client.is_connected(), timeout=30)
        after = broker.log_since(offset)
        assert f"Client {thief_id} been disconnected by administrative action" in after
        # ... and every reconnect with the stolen key meets the reloaded CRL.
        assert _refused(broker.mosquitto, stolen)
        poll(lambda: broker.log_since(offset).count("certificate verify failed") >= 2, timeout=30)
        after = broker.log_since(offset)
        assert not re.findall(rf"New client connected .* as {thief_id} ", after)
        # Another outlet was not touched.
        assert other.client.is_connected()
        assert "outlet-bystander" not in after

        # Enrolled again (a new certificate): the outlet connects and may publish, so the
        # plugin's entry for the revoked identity grants and refuses nothing by itself.
        renewed = _enroll(server, tmp_path / "agent-2")
        back = TlsClient(broker.mosquitto, renewed, client_id=agent_client_id(OUTLET))
        clients.append(back)
        assert back.wait_connected() == 0
        assert back.publish(f"govedge/v1/{OUTLET}/up/event", b"{}") in (0, 16)
    finally:
        for client in clients:
            client.close()
        stop_process(server.proc)


@pytest.mark.timeout(120)
def test_ingest_refuses_a_revoked_outlet_whatever_the_client_id(
    broker: Broker,  # noqa: F811
    pki_dir: Path,
    tmp_path: Path,
    thief_id: str,
) -> None:
    """No broker reload configured, so the thief stays connected: what it sends after the
    revocation is refused by the ingest, counted, alerted, never stored nor acked."""
    database = tmp_path / "fleet.db"
    server = start_server(
        broker.mosquitto.url,
        f"sqlite:///{database}",
        tmp_path / "server.log",
        env={"GOVEDGE_PKI_DIR": str(pki_dir), "GOVEDGE_ALERT_EVAL_INTERVAL_S": "0.2"},
    )
    clients: list[TlsClient] = []
    try:
        stolen = _enroll(server, tmp_path / "agent")
        client = TlsClient(broker.mosquitto, stolen, client_id=thief_id)
        clients.append(client)
        assert client.wait_connected() == 0
        thief = Sender(client, session=7)
        thief.birth()
        poll(lambda: server.state(OUTLET) == "online", timeout=30)
        before = thief.tx("submission", submission())
        poll(lambda: thief.acks().get(before) == "accepted", timeout=30)

        answer = _revoke(server)
        assert answer["broker_reloaded"] is False, answer
        assert client.client.is_connected(), "no broker reload: the thief is still connected"
        late = [thief.tx("submission", submission()), thief.tx("evaluation", evaluation(2))]

        poll(lambda: server.stats()["rejected"].get("revoked_outlet", 0) >= len(late), timeout=30)
        poll(lambda: server.state(OUTLET) == "offline", timeout=30)  # its will is refused too
        assert not set(thief.acks()) & set(late), "a refused transaction was acknowledged"
        assert _inbox(database) == {before}
        poll(lambda: "revoked_outlet_traffic" in _alerts(server), timeout=30)

        # Enrolled again: the outlet has a valid certificate, its messages count again.
        renewed = TlsClient(
            broker.mosquitto,
            _enroll(server, tmp_path / "agent-2"),
            client_id=agent_client_id(OUTLET),
        )
        clients.append(renewed)
        assert renewed.wait_connected() == 0
        outlet = Sender(renewed, session=8)
        outlet.birth()
        again = outlet.tx("submission", submission())
        poll(lambda: outlet.acks().get(again) == "accepted", timeout=30)
        assert _inbox(database) == {before, again}
    finally:
        for each in clients:
            each.close()
        stop_process(server.proc)


def test_client_id_takeover_between_outlets_is_what_the_docs_say(
    secure_broker: Mosquitto, fleet_ca: FleetCA, tmp_path: Path
) -> None:
    """Mosquitto 2.0 lets outlet A's certificate connect under outlet B's client id and
    so close B's connection (docs/security.md says why and how EMQX closes it); A still
    cannot publish as B, because topics are bound to the certificate, not the client id."""
    a = issue_outlet(fleet_ca, "outlet-taker", tmp_path / "a")
    b = issue_outlet(fleet_ca, "outlet-victim", tmp_path / "b")
    victim = TlsClient(secure_broker, b, client_id=agent_client_id("outlet-victim"))
    taker: TlsClient | None = None
    try:
        assert victim.wait_connected() == 0
        victim.client.reconnect_delay_set(min_delay=60, max_delay=60)  # stay down once closed
        taker = TlsClient(secure_broker, a, client_id=agent_client_id("outlet-victim"))
        assert taker.wait_connected() == 0
        poll(lambda: not victim.client.is_connected(), timeout=15)
        assert taker.publish("govedge/v1/outlet-victim/up/event", b"{}") == 135  # not authorized
    finally:
        victim.close()
        if taker is not None:
            taker.close()
