"""Checks on what an outlet sends: its CSR and, at renewal, proof it holds the current key.

Only EC P-256 and P-384 keys and RSA keys of at least 2048 bits are accepted; the CSR's
own signature must verify (it proves possession of the new key). At renewal the agent
also signs the SHA-256 of the CSR's DER with its *current* key, which proves that the
holder of the current certificate asked for the new one.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from fleet_server.pki.errors import BadCertificateRequest

MAX_CSR_BYTES = 16_384
_EC_CURVES = (ec.SECP256R1, ec.SECP384R1)
_MIN_RSA_BITS = 2048


def load_csr(pem: str) -> x509.CertificateSigningRequest:
    """Parse and check a PEM CSR; raise ``BadCertificateRequest`` with the reason."""
    if len(pem) > MAX_CSR_BYTES:
        raise BadCertificateRequest("CSR too large")
    try:
        csr = x509.load_pem_x509_csr(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise BadCertificateRequest("CSR is not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise BadCertificateRequest("CSR signature does not verify")
    check_public_key(csr.public_key())
    return csr


def check_public_key(key: object) -> None:
    """Accept EC P-256/P-384 and RSA ≥ 2048 keys only."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _EC_CURVES):
            raise BadCertificateRequest(f"EC curve {key.curve.name} not accepted")
        return
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise BadCertificateRequest("RSA key shorter than 2048 bits")
        return
    raise BadCertificateRequest("key type not accepted (use EC P-256)")


def csr_der(csr: x509.CertificateSigningRequest) -> bytes:
    """The DER bytes the renewal proof signs."""
    return csr.public_bytes(serialization.Encoding.DER)


def verify_possession(
    certificate: x509.Certificate, *, csr: x509.CertificateSigningRequest, signature: bytes
) -> None:
    """Check ``signature`` over the CSR's DER with the key of ``certificate``."""
    key = certificate.public_key()
    data = csr_der(csr)
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise BadCertificateRequest("current certificate has an unsupported key")
    except InvalidSignature:
        raise BadCertificateRequest("proof of possession does not verify") from None
