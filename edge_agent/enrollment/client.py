"""Talk to the fleet server's enrollment endpoints (blocking; call from a thread).

``enroll`` makes a new key on this PC, sends only its CSR with the one-time token and
stores what comes back. ``renew`` makes another new key and proves it holds the current
one by signing the new CSR's DER with the current key.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge_agent.enrollment.errors import EnrollmentError
from edge_agent.enrollment.store import Identity, TlsStore, new_key

ENROLL_PATH = "/api/v1/enroll"
RENEW_PATH = "/api/v1/enroll/renew"


def _csr(key: ec.EllipticCurvePrivateKey, common_name: str) -> x509.CertificateSigningRequest:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())


def _post(url: str, body: dict[str, str], *, timeout: float, verify: Any) -> dict[str, Any]:
    try:
        response = httpx.post(url, json=body, timeout=timeout, verify=verify)
    except httpx.HTTPError as exc:
        raise EnrollmentError(f"cannot reach the fleet server: {exc.__class__.__name__}") from None
    if response.is_error:
        try:
            detail = str(response.json().get("detail", ""))[:200]
        except ValueError:
            detail = response.reason_phrase
        raise EnrollmentError(f"the fleet server refused ({response.status_code}): {detail}")
    try:
        data = response.json()
    except ValueError:
        data = None
    fields = ("outlet_id", "certificate_pem", "ca_pem")
    if not isinstance(data, dict) or not all(isinstance(data.get(f), str) for f in fields):
        raise EnrollmentError("the fleet server's answer is not a certificate")
    return data


def enroll(
    *, server_url: str, token: str, data_dir: Path, timeout: float = 30.0, verify: Any = True
) -> Identity:
    """Enroll this PC: new key, CSR, certificate stored under ``data_dir/tls``."""
    server_url = server_url.rstrip("/")
    key = new_key()
    csr = _csr(key, "enrollment")
    pem = csr.public_bytes(serialization.Encoding.PEM).decode("ascii")
    data = _post(
        f"{server_url}{ENROLL_PATH}",
        {"token": token, "csr_pem": pem},
        timeout=timeout,
        verify=verify,
    )
    store = TlsStore(data_dir)
    store.save(
        key=key,
        certificate_pem=data["certificate_pem"],
        ca_pem=data["ca_pem"],
        server_url=server_url,
        outlet_id=data["outlet_id"],
    )
    return store.identity()


def renew(*, data_dir: Path, timeout: float = 30.0, verify: Any = True) -> Identity:
    """Renew the stored certificate with a new key; the old pair stays until success."""
    store = TlsStore(data_dir)
    current = store.identity()
    old_key = store.private_key()
    cert_pem = store.certificate().public_bytes(serialization.Encoding.PEM).decode("ascii")
    key = new_key()
    csr = _csr(key, current.outlet_id)
    proof = old_key.sign(csr.public_bytes(serialization.Encoding.DER), ec.ECDSA(hashes.SHA256()))
    data = _post(
        f"{current.server_url}{RENEW_PATH}",
        {
            "certificate_pem": cert_pem,
            "csr_pem": csr.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            "signature_b64": base64.b64encode(proof).decode("ascii"),
        },
        timeout=timeout,
        verify=verify,
    )
    if data["outlet_id"] != current.outlet_id:
        raise EnrollmentError("the renewed certificate names another outlet")
    store.save(
        key=key,
        certificate_pem=data["certificate_pem"],
        ca_pem=data["ca_pem"],
        server_url=current.server_url,
        outlet_id=current.outlet_id,
    )
    return store.identity()
