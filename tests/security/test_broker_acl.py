"""The generated broker config in a real Mosquitto: outlets stay in their own subtree."""

from __future__ import annotations

import queue
import socket
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fleet_server.pki import FleetCA
from govedge_testbed import Mosquitto
from govedge_wire import SERVER_STATE_TOPIC, Kind, topic_for
from tests.security.conftest import ClientFiles, TlsClient, issue_outlet, server_files

NOT_AUTHORIZED = 0x87
MakeClient = Callable[[ClientFiles], TlsClient]


def _nothing(client: TlsClient, *, wait: float = 1.0) -> None:
    with pytest.raises(queue.Empty):
        client.messages.get(timeout=wait)


def test_outlet_cannot_touch_another_outlets_topics(
    fleet_ca: FleetCA, tls_client: MakeClient, tmp_path: Path
) -> None:
    server = tls_client(server_files(fleet_ca))
    outlet_a = tls_client(issue_outlet(fleet_ca, "outlet-a", tmp_path / "a"))
    assert server.subscribe("govedge/v1/+/up/#") == [1]

    # Positive control: A's own uplink reaches the server.
    assert outlet_a.publish(topic_for("outlet-a", Kind.TELEMETRY), b"own") == 0
    assert server.messages.get(timeout=10).topic == topic_for("outlet-a", Kind.TELEMETRY)

    # A writing B's uplink is refused and never reaches the server.
    assert outlet_a.publish(topic_for("outlet-b", Kind.TELEMETRY), b"forged") == NOT_AUTHORIZED
    _nothing(server)

    # A cannot read B's downlink, nor everyone's uplink. Mosquitto 2.0 may grant the
    # SUBSCRIBE itself; the ACL is applied to every message it would deliver.
    outlet_a.subscribe(topic_for("outlet-b", Kind.COMMAND))
    outlet_a.subscribe("govedge/v1/#")
    assert server.publish(topic_for("outlet-b", Kind.COMMAND), b"for b only") == 0
    outlet_b = tls_client(issue_outlet(fleet_ca, "outlet-b", tmp_path / "b"))
    assert outlet_b.publish(topic_for("outlet-b", Kind.TELEMETRY), b"b's own") == 0
    assert server.messages.get(timeout=10).payload == b"b's own"
    _nothing(outlet_a)


def test_outlet_cannot_write_server_topics(
    fleet_ca: FleetCA, tls_client: MakeClient, tmp_path: Path
) -> None:
    server = tls_client(server_files(fleet_ca))
    outlet_a = tls_client(issue_outlet(fleet_ca, "outlet-a", tmp_path / "a"))
    assert server.subscribe(SERVER_STATE_TOPIC) == [1]
    # The server's own downlink works (positive control) and A may read it.
    assert outlet_a.subscribe("govedge/v1/outlet-a/down/#") == [1]
    assert server.publish(topic_for("outlet-a", Kind.DESIRED_CONFIG), b"{}") == 0
    assert outlet_a.messages.get(timeout=10).payload == b"{}"

    for kind in (Kind.DESIRED_CONFIG, Kind.COMMAND, Kind.TRANSACTION_ACK, Kind.TRANSACTION_RESULT):
        assert outlet_a.publish(topic_for("outlet-a", kind), b"forged") == NOT_AUTHORIZED
    # Neither a forged retained state nor a zero-length publish that would wipe it.
    assert outlet_a.publish(SERVER_STATE_TOPIC, b"", retain=True) == NOT_AUTHORIZED
    assert outlet_a.publish(topic_for("outlet-a", Kind.DESIRED_CONFIG), b"", retain=True) == (
        NOT_AUTHORIZED
    )
    _nothing(outlet_a)  # none of A's forgeries reached A's own downlink subscription
    _nothing(server)  # nor the server state


def test_plain_tcp_is_refused(secure_broker: Mosquitto) -> None:
    client = TlsClient(secure_broker, None, tls=False)
    try:
        with pytest.raises(queue.Empty):
            client.wait_connected(timeout=3)
    finally:
        client.close()


def test_tls_without_client_certificate_is_refused(
    secure_broker: Mosquitto, fleet_ca: FleetCA
) -> None:
    context = ssl.create_default_context(cafile=str(fleet_ca.cert_path))
    with (  # noqa: PT012 - the refusal may come at the handshake or the first read
        socket.create_connection(("127.0.0.1", secure_broker.port), timeout=5) as raw,
        pytest.raises((ssl.SSLError, ConnectionError, OSError)),
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"\x10\x00")  # the broker ends the handshake without a certificate
        assert tls.recv(1) != b""


def test_revoked_certificate_is_refused_after_restart(
    fleet_ca: FleetCA, secure_broker: Mosquitto, tls_client: MakeClient, tmp_path: Path
) -> None:
    files = issue_outlet(fleet_ca, "outlet-r", tmp_path / "r")
    tls_client(files).close()
    assert files.issued is not None
    fleet_ca.write_crl([(int(files.issued.serial_hex, 16), datetime.now(UTC))])
    # A restart rereads the CRL (and cuts open sessions); test_revocation_reload.py
    # covers the reload without one (SIGHUP and the session takeover).
    secure_broker.restart()
    refused = TlsClient(secure_broker, files)
    try:
        with pytest.raises(queue.Empty):
            refused.wait_connected(timeout=3)
    finally:
        refused.close()
    other = tls_client(issue_outlet(fleet_ca, "outlet-ok", tmp_path / "ok"))
    assert other.publish(topic_for("outlet-ok", Kind.TELEMETRY), b"x") < 0x80
