"""The ``releases`` table (migration ``0014_releases``): one row per agent build.

Rows are immutable except for the bad mark: an operator may mark a release bad (who,
when, why) so that no new install starts from it; nothing is ever deleted through the API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from fleet_server.models import Base, UTCDateTime


class Release(Base):
    """One stored artifact (wheel or bundle) and its signed manifest."""

    __tablename__ = "releases"

    # The version in PEP 440 normal form, as shown and in the manifest.
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Without trailing zeros: "1.4" and "1.4.0" are equal under PEP 440, so one release.
    version_key: Mapped[str] = mapped_column(String(64), unique=True)
    file_name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(8))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(128))
    notes: Mapped[str | None] = mapped_column(String(2000))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    bad_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    bad_by: Mapped[str | None] = mapped_column(String(128))
    bad_reason: Mapped[str | None] = mapped_column(String(1000))
