"""``GET /enrollments`` and ``GET /certificates`` (admin): the enrollment tokens minted
(never the tokens themselves, which are stored hashed) with their state, and every
outlet certificate with its expiry, soonest first, a page at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import func, select

from fleet_server.api.deps import SessionDep
from fleet_server.models import Certificate, EnrollmentToken

router = APIRouter(tags=["enrollment"])

# Certificates this close to their end are "expiring" (the alert rule's default too).
EXPIRING = timedelta(days=14)
MAX_LIMIT = 1000
TokenState = Literal["unused", "used", "expired"]
CertState = Literal["valid", "expiring", "expired", "revoked"]


class EnrollmentRow(BaseModel):
    """A minted enrollment token's record: for which outlet, by whom, its state."""

    outlet_id: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    state: TokenState


class CertificateRow(BaseModel):
    """One outlet certificate with its state."""

    serial: str
    outlet_id: str
    fingerprint_sha256: str
    issued_at: datetime
    not_after: datetime
    revoked_at: datetime | None
    state: CertState


class CertificatePage(BaseModel):
    """A page of certificates; ``total`` counts all that match."""

    items: list[CertificateRow]
    total: int
    limit: int
    offset: int


def _token_state(row: EnrollmentToken, now: datetime) -> TokenState:
    if row.used_at is not None:
        return "used"
    return "expired" if row.expires_at <= now else "unused"


def _cert_state(row: Certificate, now: datetime) -> CertState:
    if row.revoked_at is not None:
        return "revoked"
    if row.not_after <= now:
        return "expired"
    return "expiring" if row.not_after <= now + EXPIRING else "valid"


@router.get("/enrollments")
def read_enrollments(
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=64, description="outlet id prefix")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 200,
) -> list[EnrollmentRow]:
    """The newest enrollment tokens minted, with their state (used, expired, unused)."""
    now = datetime.now(UTC)
    query = select(EnrollmentToken).order_by(EnrollmentToken.created_at.desc()).limit(limit)
    if q:
        query = query.where(EnrollmentToken.outlet_id.startswith(q, autoescape=True))
    return [
        EnrollmentRow(
            outlet_id=row.outlet_id,
            created_by=row.created_by,
            created_at=row.created_at,
            expires_at=row.expires_at,
            used_at=row.used_at,
            state=_token_state(row, now),
        )
        for row in session.scalars(query)
    ]


@router.get("/certificates")
def read_all_certificates(
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=64, description="outlet id prefix")] = None,
    revoked: bool = False,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> CertificatePage:
    """Outlet certificates, the soonest to expire first (``revoked=true``: those too)."""
    now = datetime.now(UTC)
    query = select(Certificate)
    if not revoked:
        query = query.where(Certificate.revoked_at.is_(None))
    if q:
        query = query.where(Certificate.outlet_id.startswith(q, autoescape=True))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Certificate.not_after, Certificate.serial).limit(limit).offset(offset)
    )
    items = [
        CertificateRow(
            serial=row.serial,
            outlet_id=row.outlet_id,
            fingerprint_sha256=row.fingerprint_sha256,
            issued_at=row.issued_at,
            not_after=row.not_after,
            revoked_at=row.revoked_at,
            state=_cert_state(row, now),
        )
        for row in rows
    ]
    return CertificatePage(items=items, total=total, limit=limit, offset=offset)
