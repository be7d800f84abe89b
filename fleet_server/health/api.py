"""Fleet-health REST API: overview, outlet health, GeoJSON, profiles, rate limits, SSE.

Routers are split by what they need so roles can be attached per router in ``app.py``:
``read_router`` (viewer), ``write_router`` (operator: outlet profiles and regions).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select

from fleet_server.api.auth import Authenticated
from fleet_server.api.deps import SessionDep
from fleet_server.api.scope import WHOLE_FLEET_ONLY, ScopeDep
from fleet_server.health import queries
from fleet_server.health.live import LiveHub
from fleet_server.health.regions_file import check_outline
from fleet_server.health.tables import TAG_PATTERN, OutletProfile, Region
from fleet_server.ingest import OutletRateLimiter
from fleet_server.security import audit
from fleet_server.settings import Settings
from fleet_server.timeseries.sink import TelemetrySink

read_router = APIRouter(tags=["fleet health"])
write_router = APIRouter(tags=["fleet health"])

_STREAM_TICK_S = 0.5
_STREAM_HEARTBEAT_S = 15.0
# "All of them" for the rate limiter's ranking (a scoped user's outlets may rank low).
_EVERY = 2**31


class HealthParts(Protocol):
    """What these routes use of the process's runtime (``fleet_server.runtime``)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def limiter(self) -> OutletRateLimiter: ...

    @property
    def live(self) -> LiveHub: ...

    @property
    def sink(self) -> TelemetrySink | None: ...


def runtime(request: Request) -> HealthParts:
    """The app's fleet-health runtime."""
    value: HealthParts = request.app.state.health
    return value


class OutletProfileIn(BaseModel):
    """An outlet's place on the map and what the rules need to know."""

    outlet_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    name: Annotated[str, Field(max_length=256)] | None = None
    kind: Annotated[str, Field(max_length=32)] | None = None
    region_code: Annotated[str, Field(pattern=r"^[0-9]{2,12}$")] | None = None
    latitude: Annotated[float, Field(ge=-90, le=90)] | None = None
    longitude: Annotated[float, Field(ge=-180, le=180)] | None = None
    address: Annotated[str, Field(max_length=256)] | None = None
    phone: Annotated[str, Field(max_length=64)] | None = None
    opening_hours: str | dict[str, list[str]] | None = None
    service_items: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list)
    tags: list[Annotated[str, Field(pattern=TAG_PATTERN)]] = Field(
        default_factory=list, max_length=32
    )


class RegionIn(BaseModel):
    """One region; ``outline`` is a list of rings of [lon, lat] (three distinct points
    or more each; ``POST /regions/import`` also reads GeoJSON)."""

    code: Annotated[str, Field(pattern=r"^[0-9]{2,12}$")]
    name: Annotated[str, Field(min_length=1, max_length=128)]
    parent_code: Annotated[str | None, Field(pattern=r"^[0-9]{2,12}$")] = None
    outline: list[list[list[float]]] | None = None

    @field_validator("outline")
    @classmethod
    def _drawable(cls, value: list[list[list[float]]] | None) -> list[list[list[float]]] | None:
        # A point that is not a pair, or a ring of two points, broke the map's drawing.
        why = None if value is None else check_outline(value)
        if why is not None:
            raise ValueError(f"outline {why}")
        return value


@read_router.get("/fleet/overview")
def read_overview(session: SessionDep, scope: ScopeDep) -> dict[str, Any]:
    """Outlets online/offline by region and kind, open alerts, devices in trouble."""
    return queries.fleet_overview(session, scope)


class MapPoint(BaseModel):
    """One outlet on the map."""

    id: str
    lat: float
    lon: float
    state: str


@read_router.get("/fleet/map-points", response_model=list[MapPoint])
def read_map_points(session: SessionDep, scope: ScopeDep) -> Response:
    """Id, coordinates and state of every outlet with coordinates: the map's light data.

    Encoded here in one ``json.dumps``: validating and encoding 10,000 small objects
    through the response model took longer than reading them (docs/performance.md)."""
    points = queries.map_points(session, scope)
    return Response(json.dumps(points, separators=(",", ":")), media_type="application/json")


@read_router.get("/outlets.geojson")
def read_geojson(session: SessionDep, scope: ScopeDep) -> dict[str, Any]:
    """Every outlet with coordinates as GeoJSON points with live status (any GIS)."""
    return queries.outlets_geojson(session, scope)


@read_router.get("/regions")
def read_regions(session: SessionDep) -> list[dict[str, Any]]:
    """Regions and their outlines."""
    return queries.regions(session)


@read_router.get("/outlets/{outlet_id}/health")
def read_outlet_health(session: SessionDep, outlet_id: str) -> dict[str, Any]:
    """Devices (stale when the agent is not online), events, history, alerts."""
    page = queries.outlet_page(session, outlet_id)
    if page is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"outlet {outlet_id!r} not found")
    return page


@read_router.get("/ingest/rate-limits")
def read_rate_limits(
    request: Request,
    session: SessionDep,
    scope: ScopeDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> dict[str, Any]:
    """Messages refused by the per-outlet limits: the total and the worst outlets (a
    scoped user: their outlets' total and worst)."""
    health = runtime(request)
    total = health.limiter.total_excess
    worst = health.limiter.top(limit)
    if not scope.whole_fleet:
        inside = scope.outlet_ids(session) or frozenset()
        mine = [(o, n) for o, n in health.limiter.top(_EVERY) if o in inside]
        total, worst = sum(n for _, n in mine), mine[:limit]
    return {
        "rate_per_s": health.settings.ingest_outlet_rate_per_s,
        "burst": health.settings.ingest_outlet_burst,
        "total": total,
        "outlets": [{"outlet_id": o, "refused": n} for o, n in worst],
    }


@read_router.get("/timeseries/stats", dependencies=[WHOLE_FLEET_ONLY])
def read_sink_stats(request: Request) -> dict[str, Any]:
    """The time-series sink's buffer and counters (``enabled: false`` when off); the
    whole server's figures, so whole-fleet users only."""
    sink = runtime(request).sink
    if sink is None:
        return {"enabled": False}
    stats = sink.stats()
    return {
        "enabled": True,
        "buffered": stats.buffered,
        "written": stats.written,
        "dropped": stats.dropped,
        "write_errors": stats.write_errors,
        "connected": stats.connected,
    }


@read_router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(request: Request) -> StreamingResponse:
    """Server-sent events: ``change`` with a version number whenever presence, devices
    or alerts change (and a heartbeat every 15 s); clients refetch what they show.

    The first event, sent on connecting, carries the current number; ``hub`` names the
    server process the numbers belong to."""
    live = runtime(request).live

    async def events() -> AsyncIterator[str]:
        version = -1
        quiet = 0.0
        while not await request.is_disconnected():
            current = live.version
            if current != version:
                version = current
                quiet = 0.0
                data = json.dumps({"version": version, "hub": live.hub_id})
                yield f"event: change\ndata: {data}\n\n"
            elif quiet >= _STREAM_HEARTBEAT_S:
                quiet = 0.0
                yield ": heartbeat\n\n"
            await asyncio.sleep(_STREAM_TICK_S)
            quiet += _STREAM_TICK_S

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


# Ids per IN (...) list: far below any backend's bound on bound parameters.
_IN_CHUNK = 900


@write_router.put("/outlet-profiles")
def put_profiles(
    request: Request, session: SessionDep, profiles: list[OutletProfileIn], principal: Authenticated
) -> dict[str, int]:
    """Create or replace outlet profiles (the map and the rules read them)."""
    # The stored rows in a few queries: one get per item (each flushing the items before
    # it) made a 1,000-outlet PUT take seconds.
    ids = sorted({item.outlet_id for item in profiles})
    existing: dict[str, OutletProfile] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        existing.update(
            (row.outlet_id, row)
            for row in session.scalars(
                select(OutletProfile).where(OutletProfile.outlet_id.in_(chunk))
            )
        )
    for item in profiles:
        row = existing.get(item.outlet_id)
        values = item.model_dump()
        before = None if row is None else {key: getattr(row, key) for key in values}
        if row is None:
            existing[item.outlet_id] = OutletProfile(**values)
            session.add(existing[item.outlet_id])
        else:
            for key, value in values.items():
                setattr(row, key, value)
        # A profile describes a public office (name, address, hours), never a citizen.
        audit.record(
            session, actor=principal.name, action="outlet_profile.put",
            target=f"outlet:{item.outlet_id}", before=before, after=values,
        )  # fmt: skip
    session.commit()
    runtime(request).live.bump()
    return {"stored": len(profiles)}


@write_router.put("/regions")
def put_regions(
    request: Request, session: SessionDep, items: list[RegionIn], principal: Authenticated
) -> dict[str, int]:
    """Create or replace regions; a code listed twice keeps its last entry."""
    existing = {r.code: r for r in session.scalars(select(Region))}
    for item in items:
        row = existing.get(item.code)
        # Outlines can be large: the audit keeps names and whether the outline changed.
        audit.record(
            session, actor=principal.name, action="region.put", target=f"region:{item.code}",
            before=None if row is None else {"name": row.name, "parent_code": row.parent_code},
            after={"name": item.name, "parent_code": item.parent_code,
                   "outline_changed": row is None or row.outline != item.outline},
        )  # fmt: skip
        if row is None:
            existing[item.code] = Region(**item.model_dump())
            session.add(existing[item.code])
        else:
            row.name, row.parent_code, row.outline = item.name, item.parent_code, item.outline
    session.commit()
    runtime(request).live.bump()
    return {"stored": len(items)}
