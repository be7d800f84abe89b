"""Public response shapes; the wire models and the tables are never returned as such.

Timestamps are timezone-aware UTC and serialise as ISO 8601 with a ``Z``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fleet_server.models import Outlet

PresenceState = Literal["online", "offline", "stale", "unknown"]


def _presence(value: str) -> PresenceState:
    if value == "online":
        return "online"
    if value == "offline":
        return "offline"
    if value == "stale":
        return "stale"
    return "unknown"


class ErrorPublic(BaseModel):
    """An error answer: ``{"detail": "..."}``, like FastAPI's own."""

    detail: str


class DevicePublic(BaseModel):
    """One device the agent reported in its last birth."""

    model_config = ConfigDict(extra="allow")

    device_id: str
    kind: str
    model: str | None = None
    state: str
    health: dict[str, Any] = Field(default_factory=dict)


class OutletPublic(BaseModel):
    """An outlet with its agent's presence and the facts from its last birth."""

    outlet_id: str
    display_name: str | None
    created_at: datetime
    state: PresenceState
    state_since: datetime | None
    last_seen: datetime | None
    birth_at: datetime | None
    agent_version: str | None
    hostname: str | None
    os: str | None
    session: int | None
    last_seq: int | None
    config_version: int | None
    keepalive_s: int | None
    telemetry_interval_s: float | None
    devices: list[DevicePublic]
    last_metrics: dict[str, Any] | None

    @classmethod
    def from_row(cls, outlet: Outlet) -> OutletPublic:
        """Build from an ``Outlet`` row with its agent loaded."""
        agent = outlet.agent
        if agent is None:
            return cls(
                outlet_id=outlet.id,
                display_name=outlet.display_name,
                created_at=outlet.created_at,
                state="unknown",
                state_since=None,
                last_seen=None,
                birth_at=None,
                agent_version=None,
                hostname=None,
                os=None,
                session=None,
                last_seq=None,
                config_version=None,
                keepalive_s=None,
                telemetry_interval_s=None,
                devices=[],
                last_metrics=None,
            )
        return cls(
            outlet_id=outlet.id,
            display_name=outlet.display_name,
            created_at=outlet.created_at,
            state=_presence(agent.state),
            state_since=agent.state_since,
            last_seen=agent.last_seen,
            birth_at=agent.birth_at,
            agent_version=agent.agent_version,
            hostname=agent.hostname,
            os=agent.os,
            session=agent.session,
            last_seq=agent.last_seq,
            config_version=agent.config_version,
            keepalive_s=agent.keepalive_s,
            telemetry_interval_s=agent.telemetry_interval_s,
            devices=[DevicePublic.model_validate(device) for device in agent.devices or []],
            last_metrics=agent.last_metrics,
        )


class IngestStatsPublic(BaseModel):
    """Ingest counters since the server started.

    ``rejected``: messages that changed nothing, by reason (wire reasons such as
    ``not_json``, ``too_large``, ``unsupported_schema``, ``outlet_mismatch``; presence
    reasons ``stale_session``, ``late_will``, ``no_birth``, ``session_mismatch``,
    ``after_death``; ``internal_error``, ``overloaded``). ``noted``: accepted messages
    worth counting (``seq_gap``, ``transactions_received``) and events of the ingest
    (``session_resync_requested``: an outlet behind its known session was told to
    reconnect above it).
    """

    received: int
    accepted: int
    rejected: dict[str, int]
    noted: dict[str, int]
    rebirths_requested: int
    rebirths_throttled: int
    batches_committed: int
    db_errors: int
    queue_depth: int
    broker_connected: bool
    server_session: int
