"""An outlet enrolled through the fleet API, as ``edge-agent enroll`` does it, for tests
that need an outlet's certificate and key without running the command."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge_agent.enrollment.store import TlsStore
from edge_agent.fleet_config.keys import store_config_keys


def enroll_outlet(
    post: Callable[..., Any], outlet_id: str, *, admin: Mapping[str, str] | None = None
) -> tuple[ec.EllipticCurvePrivateKey, dict[str, Any]]:
    """A one-time token (as an admin), a CSR for a new key, the answer; (key, answer).

    ``post`` is an HTTP client's ``post`` (httpx or Starlette's test client)."""
    token = post(
        "/api/v1/enrollments", json={"outlet_id": outlet_id, "ttl_s": 600},
        headers=dict(admin or {}),
    ).json()["token"]  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, outlet_id)]))
        .sign(key, hashes.SHA256())
    )
    body = {"token": token, "csr_pem": csr.public_bytes(serialization.Encoding.PEM).decode()}
    answer = post("/api/v1/enroll", json=body)
    assert answer.status_code == 200, answer.text
    issued: dict[str, Any] = answer.json()
    return key, issued


def store_enrollment(
    data_dir: Path,
    outlet_id: str,
    server_url: str,
    key: ec.EllipticCurvePrivateKey,
    issued: Mapping[str, Any],
) -> None:
    """What ``edge-agent enroll`` leaves in the data dir: key, certificate, CA, keys."""
    TlsStore(data_dir / "tls").save(
        key=key, certificate_pem=issued["certificate_pem"], ca_pem=issued["ca_pem"],
        server_url=server_url, outlet_id=outlet_id,
    )  # fmt: skip
    store_config_keys(data_dir / "tls", issued["config_keys"])
