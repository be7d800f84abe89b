"""The config-outlet simulator on the secure broker: TLS, each outlet its own certificate,
the generated ACL (an outlet reads only its own downlink, writes only its own uplink)."""

from __future__ import annotations

import ssl
from pathlib import Path

from fleet_server.pki import FleetCA
from govedge_testbed import Mosquitto
from govedge_testbed.config_outlets import ConfigOutlets
from tests.security.conftest import issue_outlet, server_files
from tests.testbed.test_config_outlets import KEY, KEY_ID, FakeServer, sign, until


def _context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    return context


def test_outlets_over_tls_apply_and_report(
    secure_broker: Mosquitto, fleet_ca: FleetCA, tmp_path: Path
) -> None:
    ids = [f"tls-outlet-{i}" for i in range(5)]
    files = {outlet: issue_outlet(fleet_ca, outlet, tmp_path / outlet) for outlet in ids}
    admin = server_files(fleet_ca)
    server = FakeServer(secure_broker, tls=_context(admin.ca, admin.cert, admin.key))
    fleet = ConfigOutlets(
        "127.0.0.1",
        secure_broker.port,
        ids,
        {KEY_ID: KEY.public_key()},
        tls=lambda outlet: _context(files[outlet].ca, files[outlet].cert, files[outlet].key),
    )
    fleet.start(timeout=60)
    try:
        until(lambda: len(server.messages("birth")) == 5, "5 births over TLS")
        signed = [sign(outlet, 1, 60.0) for outlet in ids]
        for envelope in signed:
            server.publish(envelope)
        logs = fleet.wait_applied(signed[0].hash, timeout=60)
        until(lambda: len(server.messages("reported")) == 5, "5 reports over TLS")
    finally:
        fleet.stop()
        server.close()
    for outlet in ids:
        assert logs[outlet].applied_version == 1
        [report] = server.messages("reported", outlet)
        assert report["status"] == "applied"
