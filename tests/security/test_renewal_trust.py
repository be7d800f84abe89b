"""Renewal trust: the fleet CA is pinned at enrollment, and renewals must chain to it.

Real parts: a TLS Mosquitto with the generated config, ``fleet-server run``, ``edge-agent
enroll`` and ``edge-agent run --mqtt-url mqtts://``. A renewal is made due by re-signing
the agent's certificate (same key, same serial, so the server knows it) two thirds into
its validity, which is what weeks of running would give. The rogue server is a real HTTP
server answering renewals with certificates of another CA, as anyone who took over the
server's address (DNS, the network path of a plain http:// URL) could.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge_agent.enrollment import renew
from fleet_server.pki import FleetCA
from govedge_testbed import Mosquitto
from tests.e2e.conftest import BIN, Agent, Server, poll, start_server, stop_process

OUTLET = "outlet-pin-1"


def _enroll(server: Server, data_dir: Path, *extra: str, url: str | None = None) -> Any:
    created = httpx.post(
        f"{server.url}/api/v1/enrollments",
        json={"outlet_id": OUTLET, "ttl_s": 600},
        headers=server.headers,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    argv = [str(BIN / "edge-agent"), "enroll", "--server", url or server.url,
            "--token", created.json()["token"], "--data-dir", str(data_dir), *extra]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def _make_renewal_due(data_dir: Path, pki_dir: Path) -> None:
    """Re-sign the stored certificate (same key and serial) two thirds into its life."""
    ca_key = serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes())
    current = x509.load_pem_x509_certificate((data_dir / "tls" / "cert.pem").read_bytes())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(current.subject)
        .issuer_name(ca_cert.subject)
        .public_key(current.public_key())
        .serial_number(current.serial_number)
        .not_valid_before(now - timedelta(days=2))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (data_dir / "tls" / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class _Rogue(BaseHTTPRequestHandler):
    """Answers every renewal with a certificate for the CSR's key from another CA."""

    ca: FleetCA
    requests: list[str]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(self.path)
        csr = x509.load_pem_x509_csr(body["csr_pem"].encode())
        issued = self.ca.issue_client(csr, common_name=OUTLET, days=90)
        answer = json.dumps(
            {"outlet_id": OUTLET, "certificate_pem": issued.pem, "ca_pem": self.ca.pem}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def rogue_server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    requests: list[str] = []
    handler = type("Rogue", (_Rogue,), {"ca": FleetCA(tmp_path / "rogue-ca"), "requests": requests})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, name="rogue-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def _fingerprint(path: Path) -> str:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.fingerprint(hashes.SHA256()).hex()


def test_renewal_from_another_ca_is_refused(
    secure_broker: Mosquitto,
    pki_dir: Path,
    tmp_path: Path,
    rogue_server: tuple[str, list[str]],
) -> None:
    server = start_server(
        secure_broker.url,
        f"sqlite:///{tmp_path / 'fleet.db'}",
        tmp_path / "server.log",
        env={"GOVEDGE_PKI_DIR": str(pki_dir)},
    )
    data_dir = tmp_path / "agent"
    tls = data_dir / "tls"
    agent = Agent(
        outlet_id=OUTLET, data_dir=data_dir, mqtt_url=secure_broker.url, log=tmp_path / "a.log"
    )

    def metric(name: str) -> int:
        response = httpx.get(
            f"{server.url}/api/v1/outlets/{OUTLET}/health", headers=server.headers, timeout=5
        )
        if not response.is_success:
            return 0
        return int((response.json().get("last_metrics") or {}).get(name, 0))

    try:
        enrolled = _enroll(server, data_dir)
        assert enrolled.returncode == 0, enrolled.stderr
        pinned = (tls / "ca.pem").read_bytes()
        assert pinned == (pki_dir / "ca.crt").read_bytes()

        # The real server renews (the agent's own renewal call, in this process): the
        # new certificate chains to the pin and is installed.
        _make_renewal_due(data_dir, pki_dir)
        due = _fingerprint(tls / "cert.pem")
        renew(keys_dir=data_dir / "tls", timeout=30)
        assert _fingerprint(tls / "cert.pem") != due
        renewed = x509.load_pem_x509_certificate((tls / "cert.pem").read_bytes())
        renewed.verify_directly_issued_by(x509.load_pem_x509_certificate(pinned))

        # Someone else answers at the server's address with their own CA: refused.
        rogue_url, rogue_requests = rogue_server
        meta = json.loads((tls / "enrollment.json").read_text())
        (tls / "enrollment.json").write_text(json.dumps({**meta, "server_url": rogue_url}))
        _make_renewal_due(data_dir, pki_dir)
        before = {name: (tls / name).read_bytes() for name in ("cert.pem", "key.pem", "ca.pem")}
        agent.start()
        poll(lambda: metric("cert_renewals_refused") >= 1, timeout=60)
        assert rogue_requests, "the agent never asked the rogue server"
        after = {name: (tls / name).read_bytes() for name in before}
        assert after == before  # nothing installed: old certificate, key and pin in use
        poll(lambda: server.state(OUTLET) == "online", timeout=30)
        log = (tmp_path / "a.log").read_text()
        assert "certificate renewal REFUSED" in log
        assert "not by the pinned fleet CA" in log
        assert "BEGIN" not in log  # no PEM (and so no key) in the log
    finally:
        agent.stop()
        stop_process(server.proc)


def test_enrollment_over_plain_http_needs_the_flag(
    secure_broker: Mosquitto, pki_dir: Path, tmp_path: Path
) -> None:
    server = start_server(
        secure_broker.url,
        f"sqlite:///{tmp_path / 'fleet.db'}",
        tmp_path / "server.log",
        env={"GOVEDGE_PKI_DIR": str(pki_dir)},
    )
    try:
        data_dir = tmp_path / "agent"
        # The same server under a name that is not a loopback literal: refused before
        # anything is sent, so the token is not spent.
        port = server.url.rsplit(":", 1)[1]
        refused = _enroll(server, data_dir, url=f"http://fleet.example:{port}")
        assert refused.returncode == 1
        assert "refusing to enroll over plain http://" in refused.stderr
        assert "--allow-insecure-http" in refused.stderr
        assert not (data_dir / "tls").exists()

        # A CA fingerprint that is not the server's: refused, nothing stored.
        wrong = _enroll(server, data_dir, "--ca-fingerprint", "ab" * 32)
        assert wrong.returncode == 1
        assert "not the fingerprint given with --ca-fingerprint" in wrong.stderr
        assert not (data_dir / "tls" / "cert.pem").exists()

        # Loopback http:// is this PC talking to itself; the right fingerprint pins.
        ca = x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes())
        right = ca.fingerprint(hashes.SHA256()).hex(":")
        done = _enroll(server, data_dir, "--ca-fingerprint", right)
        assert done.returncode == 0, done.stderr
        assert (data_dir / "tls" / "ca.pem").read_bytes() == (pki_dir / "ca.crt").read_bytes()
    finally:
        stop_process(server.proc)
