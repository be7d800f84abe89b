"""Campaign tables (migration ``0015_campaigns``): campaigns, their outlets, each change.

An outlet's row holds its current state; ``campaign_outlet_history`` every transition
with its time, reason and detail, so a campaign's course survives server restarts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from fleet_server.models import Base, UTCDateTime


class Campaign(Base):
    """One campaign: a release, a target, waves and thresholds."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    release: Mapped[str] = mapped_column(String(64))
    target: Mapped[dict[str, Any]] = mapped_column(JSON)
    # success/failure thresholds, concurrency, jitter_s, wave_wait_s, health_timeout_s
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Sizes (outlets) of each wave, computed at creation.
    waves: Mapped[list[int]] = mapped_column(JSON)
    # Per wave (index as string): {"started_at": iso, "finished_at": iso|None}
    wave_times: Mapped[dict[str, Any]] = mapped_column(JSON)
    current_wave: Mapped[int] = mapped_column(Integer)  # -1: none started yet
    state: Mapped[str] = mapped_column(String(16), index=True)
    state_reason: Mapped[str | None] = mapped_column(String(1000))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Earliest time the next wave may start (wave_wait_s after the last one finished).
    next_wave_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CampaignOutlet(Base):
    """One outlet in one campaign: its wave and current state."""

    __tablename__ = "campaign_outlets"
    __table_args__ = (
        Index("ix_campaign_outlets_outlet_id", "outlet_id"),
        Index("ix_campaign_outlets_campaign_state", "campaign_id", "state"),
    )

    campaign_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    outlet_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)  # order in the campaign, canary first
    wave: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    since: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(String(512))
    from_version: Mapped[str | None] = mapped_column(String(128))
    # The release offered to this outlet (a resume with a fixed release changes it).
    release: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer)
    offered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_report_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CampaignOutletHistory(Base):
    """One transition of one outlet in one campaign."""

    __tablename__ = "campaign_outlet_history"
    __table_args__ = (Index("ix_campaign_outlet_history_outlet", "campaign_id", "outlet_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("campaigns.id", ondelete="CASCADE")
    )
    outlet_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    from_state: Mapped[str | None] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(String(512))
