"""``POST /api/v1/regions/import``: regions and their outlines from a file, the server's
own JSON list or GeoJSON (``health.regions_file``; docs/fleet-health.md, "Regions and
outlines"). Mounted for operators of the whole fleet, as ``PUT /regions`` is: the
outlines are the whole province's map."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from fleet_server.api.auth import Authenticated
from fleet_server.api.deps import AppStateDep
from fleet_server.health import regions_file
from fleet_server.health.api import runtime
from fleet_server.health.registry_api import row_errors
from fleet_server.security import audit

router = APIRouter(prefix="/regions", tags=["fleet health"])

MAX_UPLOAD = 16 * 1024 * 1024  # a province's county and township outlines, simplified


class RegionsImportPublic(BaseModel):
    """What an import did (a re-import of the same file: all ``unchanged``)."""

    created: int
    updated: int
    unchanged: int


@router.post(
    "/import",
    response_model=RegionsImportPublic,
    responses={422: {"description": "errors by row and field; nothing imported"}},
)
async def import_regions(
    request: Request, state: AppStateDep, principal: Authenticated
) -> RegionsImportPublic | JSONResponse:
    """Import the request body (a JSON list of regions, or a GeoJSON FeatureCollection),
    upserting regions by code. All or nothing: any bad region answers 422 with
    ``errors`` [{row, field, message}]."""
    data = await request.body()
    refused = request.app.state.metrics.region_refused
    if len(data) > MAX_UPLOAD:
        refused["too_large"] += 1
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail="file too large")
    try:
        rows = regions_file.parse_regions(data)
    except regions_file.RegionsError as exc:
        refused["invalid_rows"] += 1
        return row_errors(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc), exc.errors)

    def store() -> regions_file.ImportCounts:
        with state.sessions.begin() as session:
            counts = regions_file.import_regions(session, rows)
            # Outlines can be megabytes: the audit keeps the counts, as region.put keeps
            # whether an outline changed and not the outline.
            audit.record(
                session, actor=principal.name, action="regions.import", target="regions",
                after={"regions": len(rows), "created": counts.created,
                       "updated": counts.updated, "unchanged": counts.unchanged},
            )  # fmt: skip
            return counts

    counts = await run_in_threadpool(store)
    if counts.created or counts.updated:
        runtime(request).live.bump()
    return RegionsImportPublic(
        created=counts.created, updated=counts.updated, unchanged=counts.unchanged
    )
