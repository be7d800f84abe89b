"""Secure-mode fixtures: a fleet CA, the generated broker config, a TLS Mosquitto, and
paho clients that log in with outlet certificates issued by that CA."""

from __future__ import annotations

import queue
import ssl
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from fleet_server.broker_config import write_broker_config
from fleet_server.pki import FleetCA, IssuedCertificate
from govedge_testbed import Mosquitto, TlsMaterial, free_port
from tests.conftest import started_service


@dataclass(frozen=True)
class ClientFiles:
    """A client identity on disk."""

    ca: Path
    cert: Path
    key: Path
    issued: IssuedCertificate | None = None


@pytest.fixture
def pki_dir(tmp_path: Path) -> Path:
    return tmp_path / "pki"


@pytest.fixture
def fleet_ca(pki_dir: Path) -> FleetCA:
    return FleetCA(pki_dir)


@pytest.fixture
def secure_broker(fleet_ca: FleetCA, tmp_path: Path) -> Iterator[Mosquitto]:
    """Mosquitto running the config ``fleet-server broker-config`` generates."""
    port = free_port()
    files = write_broker_config(fleet_ca, tmp_path / "broker", port=port)
    fleet_ca.ensure_server_client()
    broker = started_service(
        lambda: Mosquitto(port=port, workdir=tmp_path / "mosq", tls=TlsMaterial(config=files.conf))
    )
    yield broker
    broker.close()


def issue_outlet(ca: FleetCA, outlet_id: str, where: Path) -> ClientFiles:
    """A key and a certificate for ``outlet_id`` signed by ``ca`` (as enrollment would)."""
    where.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, outlet_id)]))
        .sign(key, hashes.SHA256())
    )
    issued = ca.issue_client(csr, common_name=outlet_id, days=1)
    (where / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (where / "cert.pem").write_text(issued.pem)
    return ClientFiles(
        ca=ca.cert_path, cert=where / "cert.pem", key=where / "key.pem", issued=issued
    )


def server_files(ca: FleetCA) -> ClientFiles:
    files = ca.ensure_server_client()
    return ClientFiles(ca=files.ca_file, cert=files.cert_file, key=files.key_file)


class TlsClient:
    """A paho MQTT 5 client over TLS with a client certificate; records what it gets."""

    def __init__(
        self,
        broker: Mosquitto,
        files: ClientFiles | None,
        *,
        tls: bool = True,
        client_id: str | None = None,
    ) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.acks: queue.Queue[tuple[str, list[int]]] = queue.Queue()
        self.connected: queue.Queue[int] = queue.Queue()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"sec-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        if tls:
            assert files is not None
            self.client.tls_set(
                ca_certs=str(files.ca),
                certfile=str(files.cert),
                keyfile=str(files.key),
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.on_connect = lambda _c, _u, _f, rc, _p: self.connected.put(rc.value)
        self.client.on_subscribe = lambda _c, _u, mid, codes, _p: self.acks.put(
            ("sub", [c.value for c in codes])
        )
        self.client.on_publish = lambda _c, _u, mid, rc, _p: self.acks.put(("pub", [rc.value]))
        self.client.connect("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()

    def wait_connected(self, *, timeout: float = 10) -> int:
        return self.connected.get(timeout=timeout)

    def subscribe(self, topic: str) -> list[int]:
        self.client.subscribe(topic, qos=1)
        kind, codes = self.acks.get(timeout=10)
        assert kind == "sub"
        return codes

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int:
        self.client.publish(topic, payload, qos=1, retain=retain)
        kind, codes = self.acks.get(timeout=10)
        assert kind == "pub"
        return codes[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def tls_client(secure_broker: Mosquitto) -> Iterator[Callable[[ClientFiles], TlsClient]]:
    clients: list[TlsClient] = []

    def make(files: ClientFiles) -> TlsClient:
        client = TlsClient(secure_broker, files)
        clients.append(client)
        assert client.wait_connected() == 0
        return client

    yield make
    for client in clients:
        client.close()
