"""Config tables (migration ``0013_config``): scope documents with immutable versions,
and per outlet the signed effective config, what the agent reports, and drift.

``config_scopes`` holds each scope's current version, so a ``PUT`` with ``If-Match``
is one compare-and-set on it; ``config_versions`` rows are never changed or deleted
(a rollback writes a new version with the old document). ``outlet_configs`` is the
server's side of the shadow: ``desired_*`` what was signed for the outlet (its version
rises with every new effective config of that outlet, independent of scope versions),
``reported_*``/``refused_*`` what the agent last said, ``held`` an effective config
waiting for closed hours.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from fleet_server.models import Base, UTCDateTime


class ConfigScope(Base):
    """One scope (``global``, ``region:33``, ``kind:kiosk``, ``outlet:x``) and its version."""

    __tablename__ = "config_scopes"

    scope: Mapped[str] = mapped_column(String(80), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ConfigVersion(Base):
    """One immutable version of a scope's document."""

    __tablename__ = "config_versions"

    scope: Mapped[str] = mapped_column(
        String(80), ForeignKey("config_scopes.scope", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    author: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    comment: Mapped[str | None] = mapped_column(String(1024))
    # Set when this version was made by rolling back to an earlier one.
    rolled_back_to: Mapped[int | None] = mapped_column(Integer)
    # The operator asked that outlets apply this change only outside opening hours (or
    # in a 24-hour outlet's quiet window): their new effective config is held till then.
    closed_hours_only: Mapped[bool] = mapped_column(Boolean, default=False)


class OutletConfig(Base):
    """The desired config signed for one outlet and what its agent reports."""

    __tablename__ = "outlet_configs"

    outlet_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    desired_version: Mapped[int] = mapped_column(BigInteger)
    desired_hash: Mapped[str | None] = mapped_column(String(64))
    desired: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The signed envelope as published (republished as is after a broker loss).
    envelope: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # An effective config waiting for closed hours: {"config", "hash", "reason", "not_before"}.
    held: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reported_version: Mapped[int | None] = mapped_column(BigInteger)
    reported_hash: Mapped[str | None] = mapped_column(String(64))
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    refused_version: Mapped[int | None] = mapped_column(BigInteger)
    refused_reason: Mapped[str | None] = mapped_column(String(32))
    refused_detail: Mapped[str | None] = mapped_column(String(512))
    refused_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The config-signing key ids the agent holds (rotation waits for all to hold the new).
    key_ids: Mapped[list[str] | None] = mapped_column(JSON)
    in_sync_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    drifting_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
