"""Read models for the health API and the web UI: overview, outlet page, map, GeoJSON.

Keyword-only functions over a ``Session``; they return plain dicts (JSON-ready), so the
API and the server-rendered pages show the same figures. Devices of an outlet whose
agent is not online are shown ``stale`` (presence in layers).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, Subquery, cast, func, select, union
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.health.hours import describe
from fleet_server.health.tables import (
    Alert,
    DeviceEvent,
    DeviceState,
    OutletHealth,
    OutletProfile,
    Region,
    TelemetrySample,
)
from fleet_server.models import Agent, InboxEntry, Outlet
from fleet_server.security.scope import WHOLE_FLEET, Scope

TROUBLE_STATES = ("offline", "error", "stale")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def device_view(row: DeviceState, *, agent_state: str) -> dict[str, Any]:
    """One device as shown: ``state`` is ``stale`` when the agent is not online."""
    return {
        "device_id": row.device_id,
        "kind": row.kind,
        "model": row.model,
        "firmware": row.firmware,
        "state": row.state if agent_state == "online" else "stale",
        "reported_state": row.state,
        "state_since": _iso(row.state_since),
        "last_seen": _iso(row.last_seen),
        "health": row.health,
        "error_count": row.error_count,
        "reads_ok": row.reads_ok,
        "reads_failed": row.reads_failed,
    }


def _outlet_rows(
    session: Session, scope: Scope = WHOLE_FLEET, only: str | None = None
) -> list[dict[str, Any]]:
    """Every known outlet (registered or only profiled) in ``scope``, with presence and
    profile; ``only``: that one outlet (the outlet page and a click on the map need one
    row, not the whole fleet's)."""
    inside = scope.outlet_ids(session)
    agent_q, outlet_q, profile_q = select(Agent), select(Outlet), select(OutletProfile)
    alert_q = select(Alert.outlet_id).where(Alert.state == "open")
    if only is not None:
        agent_q = agent_q.where(Agent.outlet_id == only)
        outlet_q = outlet_q.where(Outlet.id == only)
        profile_q = profile_q.where(OutletProfile.outlet_id == only)
        alert_q = alert_q.where(Alert.outlet_id == only)
    agents = {row.outlet_id: row for row in session.scalars(agent_q)}
    outlets = {row.id: row for row in session.scalars(outlet_q)}
    profiles = {row.outlet_id: row for row in session.scalars(profile_q)}
    open_alerts = Counter(session.scalars(alert_q).all())
    rows = []
    for outlet_id in sorted(set(outlets) | set(profiles)):
        if inside is not None and outlet_id not in inside:
            continue
        agent = agents.get(outlet_id)
        profile = profiles.get(outlet_id)
        outlet = outlets.get(outlet_id)
        rows.append(
            {
                "outlet_id": outlet_id,
                "name": (profile.name if profile else None)
                or (outlet.display_name if outlet else None)
                or outlet_id,
                "state": agent.state if agent else "unknown",
                "state_since": _iso(agent.state_since) if agent else None,
                "last_seen": _iso(agent.last_seen) if agent else None,
                "kind": profile.kind if profile else None,
                "region_code": profile.region_code if profile else None,
                "latitude": profile.latitude if profile else None,
                "longitude": profile.longitude if profile else None,
                "address": profile.address if profile else None,
                "phone": profile.phone if profile else None,
                "opening_hours": profile.opening_hours if profile else None,
                "opening_hours_text": describe(profile.opening_hours) if profile else "24h",
                "service_items": profile.service_items if profile else [],
                "tags": list(profile.tags or []) if profile else [],
                "agent_version": agent.agent_version if agent else None,
                "config_version": agent.config_version if agent else None,
                "open_alerts": open_alerts.get(outlet_id, 0),
            }
        )
    return rows


def outlets_geojson(session: Session, scope: Scope = WHOLE_FLEET) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of the outlets in ``scope`` that have coordinates."""
    features = []
    for row in _outlet_rows(session, scope):
        if row["latitude"] is None or row["longitude"] is None:
            continue
        properties = {k: v for k, v in row.items() if k not in ("latitude", "longitude")}
        features.append(
            {
                "type": "Feature",
                "id": row["outlet_id"],
                "geometry": {"type": "Point", "coordinates": [row["longitude"], row["latitude"]]},
                "properties": properties,
            }
        )
    return {"type": "FeatureCollection", "features": features}


def regions(session: Session) -> list[dict[str, Any]]:
    """Every region with its optional outline."""
    return [
        {"code": r.code, "name": r.name, "parent_code": r.parent_code, "outline": r.outline}
        for r in session.scalars(select(Region).order_by(Region.code))
    ]


def _known_outlet_ids() -> Subquery:
    """Every outlet id that is registered or only profiled (the overview's universe)."""
    return union(select(Outlet.id.label("id")), select(OutletProfile.outlet_id)).subquery()


def _devices_in_trouble(session: Session, *, limit: int, scope: Scope) -> list[dict[str, Any]]:
    """Devices offline, in error or stale (agent not online), or low on paper.

    SQL narrows to candidates (a JSON field is read in Python on both databases), and
    the loop stops at ``limit``: the overview never walks all 50,000 devices.
    """
    agent_state = func.coalesce(Agent.state, "unknown")
    query = (
        select(DeviceState, agent_state)
        .outerjoin(Agent, Agent.outlet_id == DeviceState.outlet_id)
        .where(
            (agent_state != "online")
            | DeviceState.state.in_(TROUBLE_STATES)
            # Only rows whose health mentions a low-paper value; most say "paper": "ok".
            | cast(DeviceState.health, String).like("%near_end%")
            | cast(DeviceState.health, String).like('%"end"%')
        )
        .where(scope.outlet_clause(DeviceState.outlet_id))
        .order_by(DeviceState.outlet_id, DeviceState.device_id)
        .execution_options(yield_per=500)
    )
    trouble: list[dict[str, Any]] = []
    for device, state in session.execute(query):
        view = device_view(device, agent_state=state)
        paper = (device.health or {}).get("paper")
        if view["state"] in TROUBLE_STATES or paper in ("near_end", "end"):
            trouble.append({"outlet_id": device.outlet_id, **view})
            if len(trouble) >= limit:
                break
    return trouble


def fleet_overview(session: Session, scope: Scope = WHOLE_FLEET) -> dict[str, Any]:
    """Online/offline by region and kind, open alerts, devices in trouble (in ``scope``).

    Counted in SQL (one GROUP BY over outlets, agents and profiles), not by loading
    every outlet row: at 10,000 outlets that was most of a 3.4 s answer.
    """
    ids = _known_outlet_ids()
    state = func.coalesce(Agent.state, "unknown")
    groups = session.execute(
        select(state, OutletProfile.region_code, OutletProfile.kind, func.count())
        .select_from(ids)
        .outerjoin(Agent, Agent.outlet_id == ids.c.id)
        .outerjoin(OutletProfile, OutletProfile.outlet_id == ids.c.id)
        .where(scope.region_clause(OutletProfile.region_code))
        .group_by(state, OutletProfile.region_code, OutletProfile.kind)
    ).all()
    region_names = {r.code: r.name for r in session.scalars(select(Region))}
    by_state: Counter[str] = Counter()
    by_region: dict[str, Counter[str]] = {}
    by_kind: dict[str, Counter[str]] = {}
    for outlet_state, region_code, kind, count in groups:
        by_state[outlet_state] += count
        by_region.setdefault(region_code or "-", Counter())[outlet_state] += count
        by_kind.setdefault(kind or "-", Counter())[outlet_state] += count
    alerts = list_alerts(session, state="open", limit=50, scope=scope)
    return {
        "outlets": sum(by_state.values()),
        "by_state": dict(by_state),
        "by_region": [
            {"region_code": code, "name": region_names.get(code, code), **dict(counts)}
            for code, counts in sorted(by_region.items())
        ],
        "by_kind": [{"kind": kind, **dict(counts)} for kind, counts in sorted(by_kind.items())],
        "open_alerts": alerts,
        "devices_in_trouble": _devices_in_trouble(session, limit=200, scope=scope),
    }


def map_points(session: Session, scope: Scope = WHOLE_FLEET) -> list[dict[str, Any]]:
    """The map's light data: id, coordinates and state of each outlet with coordinates.

    About 60 bytes an outlet, where the full profiles (``outlets_geojson``) are ten times
    that: the map page draws from these (fleet_server.web.ui).
    """
    rows = session.execute(
        select(
            OutletProfile.outlet_id,
            OutletProfile.latitude,
            OutletProfile.longitude,
            func.coalesce(Agent.state, "unknown"),
        )
        .outerjoin(Agent, Agent.outlet_id == OutletProfile.outlet_id)
        .where(OutletProfile.latitude.is_not(None), OutletProfile.longitude.is_not(None))
        .where(scope.region_clause(OutletProfile.region_code))
        .order_by(OutletProfile.outlet_id)
    )
    return [
        {"id": outlet_id, "lat": lat, "lon": lon, "state": state}
        for outlet_id, lat, lon, state in rows
    ]


def alert_payload(alert: Alert, event: str) -> dict[str, Any]:
    """The JSON a webhook receives (and the API's shape of one alert)."""
    return {
        "event": event,
        "id": alert.id,
        "rule": alert.rule,
        "outlet_id": alert.outlet_id,
        "device_id": alert.device_id or None,
        "severity": alert.severity,
        "state": alert.state,
        "summary": alert.summary,
        "value": alert.value,
        "detail": alert.detail,
        "opened_at": alert.opened_at.isoformat(),
        "updated_at": alert.updated_at.isoformat(),
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        "acked_at": alert.acked_at.isoformat() if alert.acked_at else None,
        "acked_by": alert.acked_by,
        "silenced_until": alert.silenced_until.isoformat() if alert.silenced_until else None,
    }


def alert_view(alert: Alert) -> dict[str, Any]:
    """The API's and the pages' shape of one alert: the webhook's, plus who silenced it
    and why (operators' text, kept out of webhooks)."""
    payload = alert_payload(alert, "state")
    payload.pop("event")
    return payload | {"silenced_by": alert.silenced_by, "silence_reason": alert.silence_reason}


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertFilter:
    """What the alert list narrows to; ``None`` leaves a field open."""

    state: str | None = "open"
    outlet_id: str | None = None
    rule: str | None = None
    severity: str | None = None
    # A region-code prefix: the outlets whose region code starts with it.
    region: str | None = None
    # Opened at or after ``since`` and before ``until``.
    since: datetime | None = None
    until: datetime | None = None


def list_alerts(
    session: Session,
    *,
    state: str | None = "open",
    outlet_id: str | None = None,
    limit: int = 500,
    scope: Scope = WHOLE_FLEET,
    offset: int = 0,
    where: AlertFilter | None = None,
) -> list[dict[str, Any]]:
    """Alerts of the outlets in ``scope``, newest first (``where`` overrides ``state``
    and ``outlet_id``)."""
    f = where or AlertFilter(state=state, outlet_id=outlet_id)
    query = (
        select(Alert)
        .where(scope.outlet_clause(Alert.outlet_id))
        .order_by(Alert.opened_at.desc(), Alert.id.desc())
        .offset(offset)
        .limit(limit)
    )
    for column, value in (
        (Alert.state, f.state), (Alert.outlet_id, f.outlet_id), (Alert.rule, f.rule),
        (Alert.severity, f.severity),
    ):  # fmt: skip
        if value is not None:
            query = query.where(column == value)
    if f.region is not None:
        in_region = select(OutletProfile.outlet_id).where(
            OutletProfile.region_code.startswith(f.region, autoescape=True)
        )
        query = query.where(Alert.outlet_id.in_(in_region))
    if f.since is not None:
        query = query.where(Alert.opened_at >= f.since)
    if f.until is not None:
        query = query.where(Alert.opened_at < f.until)
    return [alert_view(row) for row in session.scalars(query)]


def outlet_page(
    session: Session, outlet_id: str, *, history: timedelta = timedelta(hours=6)
) -> dict[str, Any] | None:
    """Everything the outlet page shows, or None if the outlet is unknown."""
    rows = _outlet_rows(session, only=outlet_id)
    if not rows:
        return None
    row = rows[0]
    agent = session.get(Agent, outlet_id)
    agent_state = agent.state if agent else "unknown"
    devices = [
        device_view(d, agent_state=agent_state)
        for d in session.scalars(
            select(DeviceState)
            .where(DeviceState.outlet_id == outlet_id)
            .order_by(DeviceState.device_id)
        )
    ]
    events = [
        {
            "name": e.name,
            "device_id": e.device_id,
            "severity": e.severity,
            "data": e.data,
            "ts": _iso(e.ts),
            "received_at": _iso(e.received_at),
        }
        for e in session.scalars(
            select(DeviceEvent)
            .where(DeviceEvent.outlet_id == outlet_id)
            .order_by(DeviceEvent.received_at.desc(), DeviceEvent.id.desc())
            .limit(50)
        )
    ]
    since = datetime.now(UTC) - history
    samples = [
        {"at": _iso(s.at), "metrics": s.metrics, "devices": s.devices}
        for s in session.scalars(
            select(TelemetrySample)
            .where(TelemetrySample.outlet_id == outlet_id, TelemetrySample.at >= since)
            .order_by(TelemetrySample.at)
        )
    ]
    waiting = session.scalar(
        select(func.count())
        .select_from(InboxEntry)
        .where(InboxEntry.outlet_id == outlet_id, InboxEntry.state == "pending")
    )
    health = session.get(OutletHealth, outlet_id)
    return {
        **row,
        "hostname": agent.hostname if agent else None,
        "os": agent.os if agent else None,
        "last_metrics": agent.last_metrics if agent else None,
        "clock_skew_s": health.clock_skew_s if health else None,
        "flaps": health.flaps if health else 0,
        "devices": devices,
        "events": events,
        "history": samples,
        "transactions_waiting": int(waiting or 0),
        "alerts": list_alerts(session, state=None, outlet_id=outlet_id, limit=50),
    }


def outlet_regions(sessions: sessionmaker[Session]) -> dict[str, str]:
    """outlet id → its profile's region code, for every outlet that has one (the
    ``region`` tag of its time series, ``timeseries.regions``)."""
    with sessions() as session:
        rows = session.execute(
            select(OutletProfile.outlet_id, OutletProfile.region_code).where(
                OutletProfile.region_code.is_not(None)
            )
        ).all()
    return {str(outlet): str(region) for outlet, region in rows}
