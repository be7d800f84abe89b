"""The config rollout bench in secure mode: the generated broker config (TLS, client
certificates, ACL) and one client certificate per simulated outlet, issued by a fleet CA
of the run, as enrollment would issue them."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _common import TunedMosquitto
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleet_server.broker_config import write_broker_config
from fleet_server.pki import FleetCA
from govedge_testbed import TlsMaterial, free_port


@dataclass
class SecureFleet:
    broker: TunedMosquitto
    outlet_context: Callable[[str], ssl.SSLContext]
    server_context: ssl.SSLContext


def _context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    return context


def _issue(ca: FleetCA, outlet: str, where: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, outlet)]))
        .sign(key, hashes.SHA256())
    )
    issued = ca.issue_client(csr, common_name=outlet, days=1)
    (where / f"{outlet}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (where / f"{outlet}.crt").write_text(issued.pem)


def secure_fleet(work: Path, ids: list[str], extra: list[str]) -> SecureFleet:
    """A TLS broker (not started) and the TLS contexts of the outlets and the publisher."""
    ca = FleetCA(work / "pki")
    port = free_port()
    files = write_broker_config(ca, work / "broker-conf", port=port)
    certs = work / "outlet-certs"
    certs.mkdir()
    for outlet in ids:
        _issue(ca, outlet, certs)
    admin = ca.ensure_server_client()
    broker = TunedMosquitto(
        extra, port=port, workdir=work / "broker", tls=TlsMaterial(config=files.conf)
    )
    return SecureFleet(
        broker=broker,
        outlet_context=lambda o: _context(ca.cert_path, certs / f"{o}.crt", certs / f"{o}.key"),
        server_context=_context(admin.ca_file, admin.cert_file, admin.key_file),
    )
