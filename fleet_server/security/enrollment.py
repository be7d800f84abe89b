"""Enrollment tokens, certificate issue and renewal, revocation and the CRL.

- ``create_enrollment``: a one-time token bound to one outlet id, valid ``ttl``.
- ``enroll``: redeem the token (atomically: ``UPDATE … WHERE used_at IS NULL``) for a
  client certificate with CN = the token's outlet id; the CSR's subject is ignored.
- ``renew``: the holder of a valid, unrevoked certificate signs the new CSR's DER with
  its current key and gets a new certificate for the same outlet.
- ``revoke_outlet``: revoke every certificate of an outlet and rewrite the CRL.

Every step writes its audit entry in the same transaction as the change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fleet_server.models import Certificate, EnrollmentToken, Outlet
from fleet_server.pki import BadCertificateRequest, FleetCA, PkiError, load_csr, verify_possession
from fleet_server.security import audit
from fleet_server.security.errors import NotFound, Refused, SecurityError
from fleet_server.security.tokens import (
    ENROLLMENT_PREFIX,
    MAX_TOKEN_LENGTH,
    new_token,
    token_hash,
)
from govedge_wire import is_valid_outlet_id

logger = logging.getLogger(__name__)

_REFUSED = "enrollment token is invalid, expired or already used"


@dataclass(frozen=True, slots=True, kw_only=True)
class NewEnrollment:
    """An enrollment token just created; ``token`` is shown once."""

    outlet_id: str
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedForOutlet:
    """What an enrolling or renewing agent gets back."""

    outlet_id: str
    certificate_pem: str
    ca_pem: str
    serial: str
    not_after: datetime


def create_enrollment(
    session: Session, *, outlet_id: str, ttl: timedelta, actor: str
) -> NewEnrollment:
    """Store a hashed one-time token for ``outlet_id``; the clear token is returned once."""
    if not is_valid_outlet_id(outlet_id):
        raise SecurityError(f"invalid outlet id {outlet_id!r}")
    now = datetime.now(UTC)
    token = new_token(ENROLLMENT_PREFIX)
    expires = now + ttl
    session.add(
        EnrollmentToken(
            token_hash=token_hash(token),
            outlet_id=outlet_id,
            created_by=actor,
            created_at=now,
            expires_at=expires,
            used_at=None,
        )
    )
    audit.record(
        session,
        actor=actor,
        action="enrollment.token_create",
        target=f"outlet:{outlet_id}",
        after={"expires_at": expires.isoformat()},
        at=now,
    )
    session.commit()
    return NewEnrollment(outlet_id=outlet_id, token=token, expires_at=expires)


def _record_certificate(
    session: Session, ca: FleetCA, csr: x509.CertificateSigningRequest, *, outlet_id: str, days: int
) -> IssuedForOutlet:
    issued = ca.issue_client(csr, common_name=outlet_id, days=days)
    session.add(
        Certificate(
            serial=issued.serial_hex,
            outlet_id=outlet_id,
            fingerprint_sha256=issued.fingerprint_sha256,
            issued_at=issued.not_before,
            not_after=issued.not_after,
            revoked_at=None,
        )
    )
    return IssuedForOutlet(
        outlet_id=outlet_id,
        certificate_pem=issued.pem,
        ca_pem=ca.pem,
        serial=issued.serial_hex,
        not_after=issued.not_after,
    )


def enroll(
    session: Session, ca: FleetCA, *, token: str, csr_pem: str, days: int
) -> IssuedForOutlet:
    """Redeem ``token`` for a certificate; ``Refused`` for any bad, expired or used token."""
    if not token.startswith(ENROLLMENT_PREFIX) or len(token) > MAX_TOKEN_LENGTH:
        raise Refused(_REFUSED)
    try:
        csr = load_csr(csr_pem)
    except BadCertificateRequest as exc:
        raise SecurityError(str(exc)) from None
    now = datetime.now(UTC)
    digest = token_hash(token)
    claimed = session.execute(
        update(EnrollmentToken)
        .where(
            EnrollmentToken.token_hash == digest,
            EnrollmentToken.used_at.is_(None),
            EnrollmentToken.expires_at > now,
        )
        .values(used_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        raise Refused(_REFUSED)
    outlet_id = session.scalars(
        select(EnrollmentToken.outlet_id).where(EnrollmentToken.token_hash == digest)
    ).one()
    if session.get(Outlet, outlet_id) is None:
        session.add(Outlet(id=outlet_id, display_name=None, created_at=now))
    result = _record_certificate(session, ca, csr, outlet_id=outlet_id, days=days)
    audit.record(
        session,
        actor=f"outlet:{outlet_id}",
        action="certificate.issue",
        target=f"outlet:{outlet_id}",
        after={"serial": result.serial, "not_after": result.not_after.isoformat()},
        at=now,
    )
    session.commit()
    logger.info("outlet %s enrolled; certificate %s", outlet_id, result.serial)
    return result


def renew(
    session: Session,
    ca: FleetCA,
    *,
    certificate_pem: str,
    csr_pem: str,
    signature: bytes,
    days: int,
) -> IssuedForOutlet:
    """Issue a new certificate to the holder of a valid, unrevoked current one."""
    now = datetime.now(UTC)
    try:
        current = x509.load_pem_x509_certificate(certificate_pem.encode("ascii"))
        csr = load_csr(csr_pem)
        ca.verify_issued(current, at=now)
        verify_possession(current, csr=csr, signature=signature)
    except (ValueError, UnicodeEncodeError, PkiError) as exc:
        raise Refused(f"renewal refused: {exc}") from None
    row = session.get(Certificate, f"{current.serial_number:x}")
    if row is None or row.revoked_at is not None:
        raise Refused("renewal refused: certificate unknown or revoked")
    outlet_id = row.outlet_id
    result = _record_certificate(session, ca, csr, outlet_id=outlet_id, days=days)
    audit.record(
        session,
        actor=f"outlet:{outlet_id}",
        action="certificate.renew",
        target=f"outlet:{outlet_id}",
        before={"serial": row.serial},
        after={"serial": result.serial, "not_after": result.not_after.isoformat()},
        at=now,
    )
    session.commit()
    logger.info("outlet %s renewed its certificate; new %s", outlet_id, result.serial)
    return result


def revoke_outlet(session: Session, ca: FleetCA, *, outlet_id: str, actor: str) -> list[str]:
    """Revoke every unrevoked certificate of ``outlet_id`` and rewrite the CRL.

    Also voids the outlet's unused enrollment tokens. Returns the serials revoked.
    """
    rows = session.scalars(
        select(Certificate).where(
            Certificate.outlet_id == outlet_id, Certificate.revoked_at.is_(None)
        )
    ).all()
    if not rows and session.get(Outlet, outlet_id) is None:
        raise NotFound(f"outlet {outlet_id!r} not found")
    now = datetime.now(UTC)
    for row in rows:
        row.revoked_at = now
    session.execute(
        update(EnrollmentToken)
        .where(EnrollmentToken.outlet_id == outlet_id, EnrollmentToken.used_at.is_(None))
        .values(used_at=now)
    )
    serials = [row.serial for row in rows]
    audit.record(
        session,
        actor=actor,
        action="certificate.revoke",
        target=f"outlet:{outlet_id}",
        after={"serials": serials},
        at=now,
    )
    session.flush()
    write_crl(session, ca)
    session.commit()
    logger.info("outlet %s: %d certificate(s) revoked", outlet_id, len(serials))
    return serials


def write_crl(session: Session, ca: FleetCA) -> None:
    """Rewrite the CRL from every revoked certificate still within its validity."""
    now = datetime.now(UTC)
    revoked = session.execute(
        select(Certificate.serial, Certificate.revoked_at).where(
            Certificate.revoked_at.is_not(None), Certificate.not_after > now
        )
    ).all()
    ca.write_crl((int(serial, 16), at) for serial, at in revoked if at is not None)
