"""Tables as typed SQLAlchemy declarative models.

``outlets`` is the registry entry (auto-created on an outlet's first birth until
enrollment arrives); ``agents`` mirrors the presence state the ingest keeps in memory.
The transaction tables (``inbox``, ``delivery_attempts``, ``dead_letters``,
``catalogue_items``, ``evaluations``, ``rectifications``, ``rectification_follow_ups``)
are described in ``docs/transactions.md``. The API never returns these rows directly:
the ``api`` modules hold the public shapes. Over 400 lines as one thing: every table
the ORM maps, declared together so their relations read in one place.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from fleet_server.piivault.sealed import Sealed
from fleet_server.piivault.sealed_text import SealedText

PRESENCE_STATES = ("online", "offline", "stale", "unknown")
# pending: waiting for (re)delivery; delivered: upstream has it; dead: in the dead-letter
# queue; local: kept server-side only (queue events have no upstream).
INBOX_STATES = ("pending", "delivered", "dead", "local")

# Named constraints, so batch migrations on SQLite can find them again.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Outlet(Base):
    """A service outlet (township centre, bank counter, village station, kiosk)."""

    __tablename__ = "outlets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    agent: Mapped[Agent | None] = relationship(back_populates="outlet", uselist=False)


class Agent(Base):
    """The edge agent of one outlet and its presence (see ``fleet_server.ingest.presence``)."""

    __tablename__ = "agents"
    __table_args__ = (
        CheckConstraint("state IN ('online', 'offline', 'stale', 'unknown')", name="state_valid"),
    )

    outlet_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("outlets.id", ondelete="CASCADE"), primary_key=True
    )
    agent_version: Mapped[str | None] = mapped_column(String(128))
    hostname: Mapped[str | None] = mapped_column(String(128))
    os: Mapped[str | None] = mapped_column(String(256))
    # The agent's connect counter (Sparkplug bdSeq) and the highest seq seen in it.
    session: Mapped[int | None] = mapped_column(BigInteger)
    last_seq: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    state_since: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime())
    birth_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    config_version: Mapped[int | None] = mapped_column(BigInteger)
    devices: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    keepalive_s: Mapped[int | None] = mapped_column(Integer)
    telemetry_interval_s: Mapped[float | None] = mapped_column(Float)
    last_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    outlet: Mapped[Outlet] = relationship(back_populates="agent")


class LiveChange(Base):
    """One row: the change number every server process of the database shares, so a
    page served by one process updates on what another stored (``health.live_share``)."""

    __tablename__ = "live_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger)


class IngestWorker(Base):
    """One ingest worker of a share group and its heartbeat (``fleet_server.ingest.share_group``).

    ``connected`` says the worker holds its broker subscription; a row whose
    ``beat_at`` is older than the lease belongs to a worker that is gone.
    """

    __tablename__ = "ingest_workers"

    worker_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    server_id: Mapped[str] = mapped_column(String(128))
    connected: Mapped[bool] = mapped_column(Boolean)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime())


class InboxEntry(Base):
    """One transaction received from an outlet, stored before it is acknowledged.

    A transaction is ``(outlet_id, tx_id)``: each outlet's apps choose their own keys,
    so two outlets may use the same ``tx_id``; a resend finds its row and is
    acknowledged as a duplicate. ``idempotency_key`` is what upstream sees (unique
    across the province, fixed at insert: ``fleet_server.transactions.identity``).
    ``body`` may hold personal data and is never logged. The delivery worker claims a
    row by setting ``lease_until`` and records ``attempts`` and ``next_due_at``.
    """

    __tablename__ = "inbox"
    __table_args__ = (
        UniqueConstraint("outlet_id", "tx_id"),
        CheckConstraint("state IN ('pending', 'delivered', 'dead', 'local')", name="state_valid"),
        Index("ix_inbox_due", "state", "next_due_at"),
        Index("ix_inbox_outlet_kind_received", "outlet_id", "tx_kind", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tx_id: Mapped[str] = mapped_column(String(64))
    outlet_id: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(160))
    tx_kind: Mapped[str] = mapped_column(String(32))
    # Sealed at rest (AES-GCM, key id in the stored value) and bound to (outlet_id,
    # tx_id); ``body`` reads {} once purged. Set outlet_id and tx_id before body.
    sealed_body: Mapped[dict[str, Any]] = mapped_column("body", JSON)
    body = Sealed("sealed_body", table="inbox", key=("outlet_id", "tx_id"), emptied_by="purged_at")
    created_ts: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Denormalised from the body for routing and statistics (no personal data).
    item_code: Mapped[str | None] = mapped_column(String(64))
    region_code: Mapped[str | None] = mapped_column(String(12))
    window: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    target: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(512))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    case_number: Mapped[str | None] = mapped_column(String(64))
    # A TransactionResult is owed to the outlet until this is False again.
    result_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    # When the body was emptied after delivery plus retention (piivault.purge_bodies).
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Material(Base):
    """A scanned material an outlet sends in chunks (``material.chunk`` transactions).

    The header (``sha256`` of the whole, ``size``, ``chunk_count``) comes with every
    chunk and must agree; ``tx_id`` is the first submission of the same outlet that
    referenced it (its delivery plus retention frees the chunks); ``purged_at`` is set
    when the chunks were deleted. The row stays as a tombstone, so a late resend of a chunk is still
    recognised as a duplicate. Described in ``docs/transactions.md``.
    """

    __tablename__ = "materials"
    __table_args__ = (UniqueConstraint("outlet_id", "material_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    outlet_id: Mapped[str] = mapped_column(String(64))
    material_id: Mapped[str] = mapped_column(String(48))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    chunk_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    tx_id: Mapped[str | None] = mapped_column(String(64), index=True)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MaterialChunk(Base):
    """One chunk of a material, sealed with the PII vault (AES-GCM, bound to its place)."""

    __tablename__ = "material_chunks"

    material_pk: Mapped[int] = mapped_column(
        ForeignKey("materials.id", ondelete="CASCADE"), primary_key=True
    )
    chunk_index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(Integer)
    chunk_sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DeliveryAttempt(Base):
    """One try at handing an inbox row to its upstream target, kept for operators."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    inbox_id: Mapped[int] = mapped_column(ForeignKey("inbox.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    target: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(512))
    duration_ms: Mapped[int] = mapped_column(Integer)


class DeadLetter(Base):
    """A transaction that will not be delivered without an operator: permanent upstream
    rejection, exhausted retries, or no route. Replay puts its inbox row back to pending.
    """

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    inbox_id: Mapped[int] = mapped_column(ForeignKey("inbox.id", ondelete="CASCADE"), index=True)
    tx_id: Mapped[str] = mapped_column(String(64), index=True)
    outlet_id: Mapped[str] = mapped_column(String(64))
    tx_kind: Mapped[str] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(String(512))
    status_code: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CatalogueItem(Base):
    """One service item (事项) as implemented in some regions, and who receives it.

    ``code`` is the implementation code (实施编码, unique); ``base_code`` the catalogue
    code (基本编码) shared by every region's implementation of the same item.
    """

    __tablename__ = "catalogue_items"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    base_code: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[int] = mapped_column(Integer)
    handling_type: Mapped[str] = mapped_column(String(16))
    promised_days: Mapped[int | None] = mapped_column(Integer)
    department: Mapped[str] = mapped_column(String(200))
    outlet_kinds: Mapped[list[str]] = mapped_column(JSON)
    region_codes: Mapped[list[str]] = mapped_column(JSON)
    handling_mode: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(64))
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Evaluation(Base):
    """One 好差评 evaluation, normalised: ``stars`` 5 = 非常满意 … 1 = 非常不满意.

    Like the inbox row it comes with, it is named by ``(outlet_id, tx_id)``.
    """

    __tablename__ = "evaluations"
    __table_args__ = (
        UniqueConstraint("outlet_id", "tx_id"),
        Index("ix_evaluations_outlet_at", "outlet_id", "evaluated_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tx_id: Mapped[str] = mapped_column(String(64))
    outlet_id: Mapped[str] = mapped_column(String(64))
    window: Mapped[str | None] = mapped_column(String(32))
    case_number: Mapped[str | None] = mapped_column(String(64))
    level_code: Mapped[int] = mapped_column(Integer)
    stars: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(32))
    is_bad: Mapped[bool] = mapped_column(Boolean)
    is_default: Mapped[bool] = mapped_column(Boolean)
    real_name: Mapped[bool] = mapped_column(Boolean)
    evaluated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Rectification(Base):
    """A 差评 rectification ticket (整改) with its deadline; closed by a follow-up."""

    __tablename__ = "rectifications"
    __table_args__ = (CheckConstraint("status IN ('open', 'closed')", name="status_valid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    evaluation_id: Mapped[int] = mapped_column(
        ForeignKey("evaluations.id", ondelete="CASCADE"), unique=True
    )
    outlet_id: Mapped[str] = mapped_column(String(64), index=True)
    window: Mapped[str | None] = mapped_column(String(32))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RectificationFollowUp(Base):
    """One follow-up on a rectification: 回访, 整改 or 反馈; may close the ticket."""

    __tablename__ = "rectification_follow_ups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rectification_id: Mapped[int] = mapped_column(
        ForeignKey("rectifications.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    action: Mapped[str] = mapped_column(String(16))
    # Free text that may name the citizen called back: sealed at rest (piivault).
    note: Mapped[str] = mapped_column(SealedText)
    by: Mapped[str] = mapped_column(String(128))
    closes: Mapped[bool] = mapped_column(Boolean)


# -- security (docs/security.md): operators, tokens, enrollment, certificates, audit ----


class User(Base):
    """An operator account; its role is one of ``fleet_server.security.roles.Role``."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('viewer', 'operator', 'technician', 'admin')", name="role_valid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # argon2id (PHC string) for the web login; None until a password is set.
    password_hash: Mapped[str | None] = mapped_column(String(256), nullable=True)
    # Region-code prefixes the user is limited to; [] is the whole fleet
    # (fleet_server.security.scope). Read on every request, so a change applies at once.
    region_prefixes: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")


class ApiToken(Base):
    """An operator's API token, stored as its SHA-256 only (the token is shown once)."""

    __tablename__ = "api_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Web sessions only: the last request, for the idle timeout (None for API tokens).
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class LoginFailure(Base):
    """A failed web login, kept for the lockout window (per user name and per address)."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_user_name_at", "user_name", "at"),
        Index("ix_login_failures_address_at", "address", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_name: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class EnrollmentToken(Base):
    """A one-time, expiring token that lets one outlet obtain its first certificate."""

    __tablename__ = "enrollment_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    outlet_id: Mapped[str] = mapped_column(String(64), index=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Certificate(Base):
    """A client certificate the fleet CA issued to an outlet; revoked ones go in the CRL."""

    __tablename__ = "certificates"

    serial: Mapped[str] = mapped_column(String(40), primary_key=True)
    outlet_id: Mapped[str] = mapped_column(String(64), index=True)
    fingerprint_sha256: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    not_after: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RevokedTraffic(Base):
    """Messages the ingest refused because their outlet is revoked (the alert's facts).

    One row per outlet, written once per ingest batch that refused any; never per message.
    """

    __tablename__ = "revoked_traffic"

    outlet_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    refused: Mapped[int] = mapped_column(BigInteger)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditEntry(Base):
    """One change: who, when, what, on what, before and after. Append-only."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(128), index=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
