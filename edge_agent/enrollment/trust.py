"""Checks on what the fleet server answers: the pinned CA, the chain, the key, the URL.

The fleet CA is pinned at enrollment: the CA file given to ``enroll --ca-file``, the CA
whose SHA-256 fingerprint ``--ca-fingerprint`` names, or else the CA of the first answer
(trust on first use). A renewal's certificate must be issued by the pinned CA; the CA a
renewal answer carries is never stored. Messages name fingerprints and subjects only,
never key material.
"""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge_agent.enrollment.errors import EnrollmentError, UntrustedAnswer


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER, lower-case hex (what ``--ca-fingerprint`` takes)."""
    return cert.fingerprint(hashes.SHA256()).hex()


def normalise_fingerprint(value: str) -> str:
    """``AB:CD:…`` or ``abcd…`` as 64 lower-case hex digits; ``EnrollmentError`` otherwise."""
    digits = value.replace(":", "").replace(" ", "").lower()
    if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
        raise EnrollmentError("a CA fingerprint is 64 hex digits (SHA-256), colons allowed")
    return digits


def load_ca(pem: bytes, *, what: str) -> x509.Certificate:
    """The first certificate of ``pem``; it must be a CA certificate."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise UntrustedAnswer(f"{what} is not a PEM certificate") from None
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise UntrustedAnswer(f"{what} (sha256 {fingerprint(cert)}) is not a CA certificate")
    return cert


def _issuer(cert: x509.Certificate) -> str:
    names = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.issuer.rfc4514_string()


def check_issued(
    cert_pem: str,
    *,
    ca: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    outlet_id: str,
) -> x509.Certificate:
    """``cert_pem`` must be signed by ``ca``, valid now, for ``key`` and name ``outlet_id``."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise UntrustedAnswer("the certificate in the answer is not a PEM certificate") from None
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise UntrustedAnswer(
            f"the certificate in the answer was issued by {_issuer(cert)!r}, not by the "
            f"pinned fleet CA (sha256 {fingerprint(ca)})"
        ) from None
    now = datetime.now(UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise UntrustedAnswer("the certificate in the answer is expired or not yet valid")
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        raise UntrustedAnswer("the certificate in the answer is not for the key just made")
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or names[0].value != outlet_id:
        raise UntrustedAnswer("the certificate in the answer names another outlet")
    return cert


def is_loopback_url(url: str) -> bool:
    """True if ``url``'s host is ``localhost`` or a loopback IP literal (not resolved)."""
    host = urlsplit(url).hostname or ""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_enroll_url(url: str, *, allow_insecure_http: bool) -> None:
    """``https://`` always; ``http://`` to loopback, or anywhere with the explicit flag."""
    scheme = urlsplit(url).scheme
    if scheme == "https":
        return
    if scheme != "http":
        raise EnrollmentError(f"the server URL must start with https://, got {url!r}")
    if allow_insecure_http or is_loopback_url(url):
        return
    raise EnrollmentError(
        f"refusing to enroll over plain http:// ({url}): the one-time token and the fleet "
        "CA would cross the network unprotected, and anyone on the path could hand this "
        "PC another CA. Use the server's https:// URL, or pass --allow-insecure-http on a "
        "network you trust (test setups only)"
    )


def http_trust(extra_ca: Path | None) -> ssl.SSLContext:
    """Verify the server against the system's CAs plus ``extra_ca`` (the fleet CA)."""
    context = ssl.create_default_context()
    if extra_ca is not None:
        try:
            context.load_verify_locations(cafile=str(extra_ca))
        except (OSError, ssl.SSLError) as exc:
            raise EnrollmentError(f"cannot use {extra_ca} as a CA: {exc}") from None
    return context
