"""Fleet-health tables: outlet profiles and regions, device state, events, telemetry
history, alerts and alert-rule overrides (migration ``0004_health``).

``outlet_profiles`` has no foreign key to ``outlets``: an operator may load the outlet
map (coordinates, kind, opening hours, service items) before an outlet's first birth.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import JSON, CheckConstraint, Float, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fleet_server.models import Base, UTCDateTime

ALERT_STATES = ("open", "resolved")
SCOPES = ("global", "region", "kind", "outlet")


class Region(Base):
    """One administrative region (province → city → county → township → village)."""

    __tablename__ = "regions"

    code: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    parent_code: Mapped[str | None] = mapped_column(String(12))
    # Optional outline as [[lon, lat], ...] rings, drawn by the offline map.
    outline: Mapped[list[Any] | None] = mapped_column(JSON)


# What an outlet tag may be: short, lower case, safe in a URL and a shell.
TAG_PATTERN: Final = r"^[a-z0-9][a-z0-9_.-]{0,31}$"


class OutletProfile(Base):
    """What the outlet map and the alert rules need to know about an outlet."""

    __tablename__ = "outlet_profiles"

    outlet_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(256))
    # township_centre, street_centre, bank_counter, village_station, kiosk, ...
    kind: Mapped[str | None] = mapped_column(String(32), index=True)
    region_code: Mapped[str | None] = mapped_column(String(12), index=True)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    address: Mapped[str | None] = mapped_column(String(256))
    phone: Mapped[str | None] = mapped_column(String(64))
    # "24h", or {"mon": ["08:30-12:00", "13:30-17:30"], ...}; None means always open.
    opening_hours: Mapped[Any] = mapped_column(JSON, nullable=True)
    service_items: Mapped[list[str]] = mapped_column(JSON)
    # Short labels an operator groups outlets by ("pilot", "new-printers"); campaigns
    # and playbook runs target them.
    tags: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")


class DeviceState(Base):
    """One device's current state, kept from births, telemetry and events."""

    __tablename__ = "device_states"

    outlet_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(128))
    firmware: Mapped[str | None] = mapped_column(String(64))
    # ready / probing / offline / error as the agent reports it ("stale" is derived).
    state: Mapped[str] = mapped_column(String(16))
    state_since: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    health: Mapped[dict[str, Any]] = mapped_column(JSON)
    error_count: Mapped[int] = mapped_column(Integer)
    reads_ok: Mapped[int] = mapped_column(Integer)
    reads_failed: Mapped[int] = mapped_column(Integer)


class DeviceEvent(Base):
    """One event an agent reported (device unplugged, paper low, ...)."""

    __tablename__ = "device_events"
    __table_args__ = (Index("ix_device_events_outlet_received", "outlet_id", "received_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    outlet_id: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OutletHealth(Base):
    """Per-outlet facts the presence table does not hold: clock skew, flaps."""

    __tablename__ = "outlet_health"

    outlet_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    clock_skew_s: Mapped[float | None] = mapped_column(Float)
    last_telemetry_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    flaps: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TelemetrySample(Base):
    """A down-sampled telemetry snapshot (one per outlet per history interval) for charts."""

    __tablename__ = "telemetry_samples"
    __table_args__ = (Index("ix_telemetry_samples_outlet_at", "outlet_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    outlet_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    devices: Mapped[dict[str, Any]] = mapped_column(JSON)


class Alert(Base):
    """One alert: opened once per (rule, outlet, device) episode, updated, resolved."""

    __tablename__ = "alerts"
    __table_args__ = (
        CheckConstraint("state IN ('open', 'resolved')", name="state_valid"),
        Index("ix_alerts_state_key", "state", "rule", "outlet_id", "device_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(32))
    outlet_id: Mapped[str] = mapped_column(String(64))
    # "" for an outlet-level alert, so the key compares with "=" on every backend.
    device_id: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(String(256))
    value: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acked_by: Mapped[str | None] = mapped_column(String(64))
    silenced_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Who silenced it and why (the operators' page requires a reason).
    silenced_by: Mapped[str | None] = mapped_column(String(64))
    silence_reason: Mapped[str | None] = mapped_column(String(500))


class AlertRuleOverride(Base):
    """Parameters of one rule at one scope (global → region → kind → outlet)."""

    __tablename__ = "alert_rule_overrides"
    __table_args__ = (
        CheckConstraint("scope IN ('global', 'region', 'kind', 'outlet')", name="scope_valid"),
        UniqueConstraint("scope", "scope_value", "rule", name="uq_alert_rule_overrides_scope"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(16))
    # "" for the global scope.
    scope_value: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
