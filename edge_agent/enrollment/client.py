"""Talk to the fleet server's enrollment endpoints (blocking; call from a thread).

``enroll`` sends a new key's CSR with the one-time token and pins the CA of the answer
(or the one ``ca_file``/``ca_fingerprint`` name); ``renew`` proves the current key and
refuses a certificate not issued by the pinned CA (docs/security.md, "Outlet identity").
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge_agent.enrollment.errors import EnrollmentError, UntrustedAnswer
from edge_agent.enrollment.store import Identity, TlsStore, new_key
from edge_agent.enrollment.trust import (
    check_enroll_url,
    check_issued,
    fingerprint,
    http_trust,
    load_ca,
    normalise_fingerprint,
)
from edge_agent.fleet_config.keys import ConfigKeysError, parse_config_keys, store_config_keys

ENROLL_PATH = "/api/v1/enroll"
RENEW_PATH = "/api/v1/enroll/renew"


def _csr(key: ec.EllipticCurvePrivateKey, common_name: str) -> x509.CertificateSigningRequest:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())


def _post(url: str, body: dict[str, str], *, timeout: float, verify: Any) -> dict[str, Any]:
    # httpx (with its CLI's rich and pygments: ~0.6 s, ~10 MiB) loads on the first
    # enrollment or renewal, not with every agent start (docs/performance.md).
    import httpx

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


def _config_keys(data: dict[str, Any]) -> object | None:
    """The answer's config-signing public keys, checked; None from a server without them."""
    raw: object = data.get("config_keys")
    if raw is None:
        return None
    try:
        parse_config_keys(raw)
    except ConfigKeysError as exc:
        raise UntrustedAnswer(f"the answer's config keys are unusable: {exc}") from None
    return raw


def _expected_ca(
    answer_ca: x509.Certificate,
    *,
    ca_file: Path | None,
    ca_fingerprint: str | None,
    pinned: x509.Certificate | None,
) -> None:
    """The answer's CA must be the one the technician named, or the one already pinned."""
    got = fingerprint(answer_ca)
    if ca_file is not None:
        try:
            given = load_ca(ca_file.read_bytes(), what=str(ca_file))
        except OSError as exc:
            raise EnrollmentError(f"cannot read {ca_file}: {exc.strerror}") from None
        if fingerprint(given) != got:
            raise UntrustedAnswer(
                f"the server's CA (sha256 {got}) is not the CA in {ca_file} "
                f"(sha256 {fingerprint(given)})"
            )
    if ca_fingerprint is not None and normalise_fingerprint(ca_fingerprint) != got:
        raise UntrustedAnswer(
            f"the server's CA has sha256 {got}, not the fingerprint given with --ca-fingerprint"
        )
    named = ca_file is not None or ca_fingerprint is not None
    if not named and pinned is not None and fingerprint(pinned) != got:
        raise UntrustedAnswer(
            f"this data directory already trusts fleet CA sha256 {fingerprint(pinned)}, "
            f"but the server answered with CA sha256 {got}; if the fleet CA was really "
            "replaced, enroll again with --ca-fingerprint or --ca-file naming the new one"
        )


def enroll(
    *,
    server_url: str,
    token: str,
    keys_dir: Path,
    timeout: float = 30.0,
    ca_file: Path | None = None,
    ca_fingerprint: str | None = None,
    allow_insecure_http: bool = False,
) -> Identity:
    """Enroll this PC: new key, CSR, certificate and pinned CA stored in ``keys_dir``."""
    server_url = server_url.rstrip("/")
    check_enroll_url(server_url, allow_insecure_http=allow_insecure_http)
    if ca_fingerprint is not None:
        normalise_fingerprint(ca_fingerprint)  # a typo fails before the token is spent
    verify = http_trust(ca_file)
    store = TlsStore(keys_dir)
    pinned = store.pinned_ca() if store.ca_path.exists() else None
    key = new_key()
    csr = _csr(key, "enrollment")
    pem = csr.public_bytes(serialization.Encoding.PEM).decode("ascii")
    data = _post(
        f"{server_url}{ENROLL_PATH}",
        {"token": token, "csr_pem": pem},
        timeout=timeout,
        verify=verify,
    )
    ca = load_ca(data["ca_pem"].encode("ascii", "replace"), what="the CA in the answer")
    _expected_ca(ca, ca_file=ca_file, ca_fingerprint=ca_fingerprint, pinned=pinned)
    check_issued(data["certificate_pem"], ca=ca, key=key, outlet_id=data["outlet_id"])
    config_keys = _config_keys(data)
    store.save(
        key=key,
        certificate_pem=data["certificate_pem"],
        ca_pem=ca.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        server_url=server_url,
        outlet_id=data["outlet_id"],
    )
    if config_keys is not None:
        store_config_keys(keys_dir, config_keys)
    return store.identity()


def renew(*, keys_dir: Path, timeout: float = 30.0, verify: Any = None) -> Identity:
    """Renew the stored certificate with a new key; the old pair stays until success.

    ``UntrustedAnswer`` when the new certificate is not issued by the pinned CA (or is
    not for the new key, or names another outlet): nothing is stored.
    """
    store = TlsStore(keys_dir)
    current = store.identity()
    pinned = store.pinned_ca()
    old_key = store.private_key()
    cert_pem = store.certificate().public_bytes(serialization.Encoding.PEM).decode("ascii")
    if verify is None:  # the system's CAs plus the pinned fleet CA
        verify = http_trust(store.ca_path)
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
        raise UntrustedAnswer("the renewed certificate names another outlet")
    check_issued(data["certificate_pem"], ca=pinned, key=key, outlet_id=current.outlet_id)
    config_keys = _config_keys(data)
    store.save(
        key=key,
        certificate_pem=data["certificate_pem"],
        ca_pem=None,  # the pin never changes on renewal
        server_url=current.server_url,
        outlet_id=current.outlet_id,
    )
    if config_keys is not None:
        store_config_keys(keys_dir, config_keys)
    return store.identity()
