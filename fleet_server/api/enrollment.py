"""Enrollment: tokens for technicians, certificates for agents, revocation.

``admin_router`` (technician and up): ``POST /enrollments``, ``POST /outlets/{id}/revoke``,
``GET /outlets/{id}/certificates`` (viewer). ``public_router``: ``POST /enroll`` and
``POST /enroll/renew``, which take no operator token: the one-time enrollment token or
the proof of possession of the current certificate's key is the gate.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import timedelta

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import select

from fleet_server.api.auth import OPEN, TECHNICIAN, VIEWER, Authenticated, SecurityDep
from fleet_server.api.deps import AppStateDep, IngestDep, SessionDep
from fleet_server.api.scope import WHOLE_FLEET_ONLY
from fleet_server.api.security_schemas import (
    BROKER_DONE_STEP,
    BROKER_RELOAD_STEP,
    SESSION_STEP,
    CertificateIssued,
    CertificatePublic,
    EnrollmentCreate,
    EnrollmentPublic,
    EnrollRequest,
    RenewRequest,
    RevocationPublic,
)
from fleet_server.models import Certificate
from fleet_server.pki import PkiError
from fleet_server.security import SecurityError
from fleet_server.security import enrollment as ops
from fleet_server.security.broker_control import after_revocation

admin_router = APIRouter(tags=["enrollment"])
public_router = APIRouter(prefix="/enroll", tags=["enrollment"], dependencies=[OPEN])


def _http(exc: SecurityError | PkiError) -> HTTPException:
    code = exc.status if isinstance(exc, SecurityError) else status.HTTP_500_INTERNAL_SERVER_ERROR
    return HTTPException(code, detail=str(exc))


# An enrollment token may name any outlet id, one not yet in any region: whole-fleet only.
@admin_router.post("/enrollments", status_code=201, dependencies=[TECHNICIAN, WHOLE_FLEET_ONLY])
def create_enrollment(
    body: EnrollmentCreate, session: SessionDep, security: SecurityDep, principal: Authenticated
) -> EnrollmentPublic:
    """A one-time token for ``outlet_id``, valid ``ttl_s``; shown in this answer only."""
    ttl = min(body.ttl_s, security.settings.enrollment_ttl_max_s)
    try:
        new = ops.create_enrollment(
            session, outlet_id=body.outlet_id, ttl=timedelta(seconds=ttl), actor=principal.name
        )
    except SecurityError as exc:
        raise _http(exc) from None
    return EnrollmentPublic(outlet_id=new.outlet_id, token=new.token, expires_at=new.expires_at)


@admin_router.post("/outlets/{outlet_id}/revoke", dependencies=[TECHNICIAN])
def revoke_outlet(
    outlet_id: str,
    session: SessionDep,
    security: SecurityDep,
    principal: Authenticated,
    ingest: IngestDep,
) -> RevocationPublic:
    """Revoke every certificate of the outlet, rewrite the CRL, refuse its messages at
    the ingest at once, make the broker reload the CRL and close every connection of the
    outlet's identity (when a broker reload is configured)."""
    try:
        serials = ops.revoke_outlet(
            session, security.ca(), outlet_id=outlet_id, actor=principal.name
        )
    except (SecurityError, PkiError) as exc:
        raise _http(exc) from None
    ingest.revoked.add(outlet_id)  # other server processes: at their next refresh
    action = after_revocation(security.settings, outlet_id)
    if not action.reloaded:
        step = BROKER_RELOAD_STEP
    else:
        step = BROKER_DONE_STEP if action.session_ended else SESSION_STEP
    return RevocationPublic(
        outlet_id=outlet_id,
        revoked=serials,
        broker_reloaded=action.reloaded,
        session_ended=action.session_ended,
        broker_detail=action.detail,
        next_step=step,
    )


@admin_router.get("/outlets/{outlet_id}/certificates", dependencies=[VIEWER])
def read_certificates(outlet_id: str, session: SessionDep) -> list[CertificatePublic]:
    """Certificates issued to the outlet, newest first."""
    rows = session.scalars(
        select(Certificate)
        .where(Certificate.outlet_id == outlet_id)
        .order_by(Certificate.issued_at.desc())
    ).all()
    return [
        CertificatePublic(
            serial=row.serial,
            fingerprint_sha256=row.fingerprint_sha256,
            issued_at=row.issued_at,
            not_after=row.not_after,
            revoked_at=row.revoked_at,
        )
        for row in rows
    ]


def _issued(result: ops.IssuedForOutlet, config_keys: Mapping[str, str]) -> CertificateIssued:
    return CertificateIssued(
        outlet_id=result.outlet_id,
        certificate_pem=result.certificate_pem,
        ca_pem=result.ca_pem,
        serial=result.serial,
        not_after=result.not_after,
        config_keys=dict(config_keys),
    )


@public_router.post("", responses={403: {"description": "token invalid, expired or used"}})
def enroll(
    body: EnrollRequest,
    session: SessionDep,
    security: SecurityDep,
    ingest: IngestDep,
    state: AppStateDep,
) -> CertificateIssued:
    """Redeem a one-time enrollment token for the outlet's client certificate."""
    try:
        result = ops.enroll(
            session,
            security.ca(),
            token=body.token,
            csr_pem=body.csr_pem,
            days=security.settings.outlet_cert_days,
        )
    except (SecurityError, PkiError) as exc:
        raise _http(exc) from None
    ingest.revoked.discard(result.outlet_id)  # a valid certificate again: not revoked
    return _issued(result, state.config_keys)


@public_router.post("/renew", responses={403: {"description": "proof refused"}})
def renew(
    body: RenewRequest, session: SessionDep, security: SecurityDep, state: AppStateDep
) -> CertificateIssued:
    """A new certificate for the holder of a valid one (proof: signature over the CSR)."""
    try:
        signature = base64.b64decode(body.signature_b64, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="signature is not base64") from None
    try:
        result = ops.renew(
            session,
            security.ca(),
            certificate_pem=body.certificate_pem,
            csr_pem=body.csr_pem,
            signature=signature,
            days=security.settings.outlet_cert_days,
        )
    except (SecurityError, PkiError) as exc:
        raise _http(exc) from None
    return _issued(result, state.config_keys)
