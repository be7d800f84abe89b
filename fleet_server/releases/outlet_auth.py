"""Downloads by agents: an operator token with the viewer role, or an outlet's proof.

Agents have no API token; their identity is the client certificate from enrollment.
As ``POST /enroll/renew`` does, the server takes the certificate and a signature made
with its key, here over the request itself (docs/updates.md, "Downloads by agents"):

    X-Govedge-Outlet-Certificate: base64 of the certificate PEM
    X-Govedge-Outlet-Time:        Unix seconds when the request was made
    X-Govedge-Outlet-Signature:   base64 signature (ECDSA-SHA256; RSA PKCS#1 v1.5) over
                                  "govedge-outlet-request-v1\\n{METHOD}\\n{path}\\n{time}"

The certificate must be the fleet CA's, valid now, known and not revoked; the time
within ``MAX_PROOF_SKEW_S`` of the server's. Failing any of these is 401. The header
names and the signed bytes are part of the wire contract (``govedge_wire.releases``).
"""

from __future__ import annotations

import base64
import binascii
import time
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from fastapi import HTTPException, Request, status

from fleet_server.api.auth import SecurityDep, authenticate
from fleet_server.api.deps import AppStateDep
from fleet_server.models import Certificate
from fleet_server.pki import PkiError
from fleet_server.security import Role
from govedge_wire.releases import (
    CERTIFICATE_HEADER,
    MAX_PROOF_SKEW_S,
    SIGNATURE_HEADER,
    TIME_HEADER,
    download_proof_payload,
)


def _refused(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=f"outlet proof refused: {detail}")


def outlet_caller(request: Request, security: SecurityDep, state: AppStateDep) -> str:
    """The outlet id the request's proof names; 401 when the proof does not hold."""
    try:
        pem = base64.b64decode(request.headers.get(CERTIFICATE_HEADER, ""), validate=True)
        signature = base64.b64decode(request.headers.get(SIGNATURE_HEADER, ""), validate=True)
        at = int(request.headers.get(TIME_HEADER, ""))
        certificate = x509.load_pem_x509_certificate(pem)
    except (binascii.Error, ValueError):
        raise _refused("malformed headers") from None
    # A proof is a bearer credential for this one path while it is fresh.
    if abs(time.time() - at) > MAX_PROOF_SKEW_S:
        raise _refused(f"time is more than {MAX_PROOF_SKEW_S} s from the server's")
    try:
        security.ca().verify_issued(certificate, at=datetime.now(UTC))
    except PkiError as exc:
        raise _refused(str(exc)) from None
    data = download_proof_payload(request.method, request.url.path, at)
    key = certificate.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise _refused("unsupported key type")
    except InvalidSignature:
        raise _refused("signature does not verify") from None
    with state.sessions() as session:
        row = session.get(Certificate, f"{certificate.serial_number:x}")
    if row is None or row.revoked_at is not None:
        raise _refused("certificate unknown or revoked")
    return row.outlet_id


def viewer_or_outlet(request: Request, security: SecurityDep, state: AppStateDep) -> str:
    """Who downloads: ``outlet:{id}`` with an outlet proof, else a viewer's name (401/403)."""
    if security.auth_enabled and CERTIFICATE_HEADER in request.headers:
        return f"outlet:{outlet_caller(request, security, state)}"
    principal = authenticate(request, security, state)
    if not principal.role.allows(Role.VIEWER):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="this needs the viewer role")
    return principal.name


# Read by tests/security/test_api_roles.py: for operators this route needs a viewer.
viewer_or_outlet.required_role = Role.VIEWER  # type: ignore[attr-defined]
