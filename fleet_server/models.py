"""Registry tables as typed SQLAlchemy declarative models.

``outlets`` is the registry entry (auto-created on an outlet's first birth until
enrollment arrives); ``agents`` mirrors the presence state the ingest keeps in memory.
The API never returns these rows directly: ``api.schemas`` holds the public shapes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

PRESENCE_STATES = ("online", "offline", "stale", "unknown")

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
    """The edge agent of one outlet and its presence (see ``fleet_server.presence``)."""

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
