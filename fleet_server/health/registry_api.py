"""``/api/v1/outlets/import`` and ``/export``: the outlet registry as a CSV or JSON file
(docs/outlet-registry.md). ``write_router`` (operator and up, scoped users for their own
regions), ``read_router`` (viewer: the file holds only what the outlet list and the map
already show a viewer)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from fleet_server.api.auth import Authenticated
from fleet_server.api.deps import AppStateDep, SessionDep
from fleet_server.api.scope import ScopeDep
from fleet_server.health import registry_file as registry
from fleet_server.health.api import runtime
from fleet_server.security import audit

read_router = APIRouter(prefix="/outlets", tags=["outlet registry"])
write_router = APIRouter(prefix="/outlets", tags=["outlet registry"])

MAX_UPLOAD = 16 * 1024 * 1024
Format = Literal["csv", "json"]


class RegistryImportPublic(BaseModel):
    """What an import did (a re-import of the same file: all ``unchanged``)."""

    created: int
    updated: int
    unchanged: int


def _format(request: Request, fmt: str | None) -> Format:
    chosen = fmt or ("json" if "json" in request.headers.get("content-type", "") else "csv")
    if chosen not in ("csv", "json"):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="format: csv or json")
    return "json" if chosen == "json" else "csv"


def _refused(request: Request) -> Counter[str]:
    counts: Counter[str] = request.app.state.metrics.registry_refused
    return counts


def row_errors(code: int, detail: str, errors: list[registry.RowError]) -> JSONResponse:
    """A refused file's answer: ``detail`` and each error as {row, field, message}."""
    rows = [{"row": e.row, "field": e.field, "message": e.message} for e in errors]
    return JSONResponse({"detail": detail, "errors": rows}, status_code=code)


@write_router.post(
    "/import",
    response_model=RegistryImportPublic,
    responses={
        403: {"description": "rows outside the caller's region scope; nothing imported"},
        422: {"description": "errors by row and field; nothing imported"},
    },
)
async def import_outlets(
    request: Request,
    state: AppStateDep,
    principal: Authenticated,
    fmt: Annotated[str | None, Query(alias="format")] = None,
) -> RegistryImportPublic | JSONResponse:
    """Import the request body (CSV, or JSON with ``Content-Type: application/json``),
    upserting outlets by id. All or nothing: any bad row answers 422 with ``errors``
    [{row, field, message}]; a row outside a scoped caller's regions answers 403."""
    data = await request.body()
    if len(data) > MAX_UPLOAD:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail="file too large")
    chosen = _format(request, fmt)
    try:
        rows = registry.parse_registry(data, fmt=chosen)
    except registry.RegistryError as exc:
        _refused(request)["invalid_rows"] += 1
        return row_errors(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc), exc.errors)

    def store() -> registry.ImportCounts | list[registry.RowError]:
        with state.sessions.begin() as session:
            outside = registry.outside_scope(session, principal.scope, rows)
            if outside:
                return outside
            counts = registry.import_registry(session, rows, now=datetime.now(UTC))
            audit.record(
                session, actor=principal.name, action="outlet_registry.import",
                target="outlet-registry",
                after={"format": chosen, "rows": len(rows), "created": counts.created,
                       "updated": counts.updated, "unchanged": counts.unchanged},
            )  # fmt: skip
            return counts

    result = await run_in_threadpool(store)
    if isinstance(result, list):
        _refused(request)["outside_scope"] += 1
        detail = f"{len(result)} rows outside your region scope; nothing was imported"
        return row_errors(status.HTTP_403_FORBIDDEN, detail, result)
    if result.created or result.updated:
        runtime(request).live.bump()
    return RegistryImportPublic(
        created=result.created, updated=result.updated, unchanged=result.unchanged
    )


@read_router.get("/export", response_class=Response)
def export_outlets(
    session: SessionDep,
    scope: ScopeDep,
    fmt: Annotated[Format, Query(alias="format")] = "json",
) -> Response:
    """The registry inside the caller's scope as a file ``import`` reads back unchanged."""
    text = registry.export_registry(registry.export_rows(session, scope), fmt=fmt)
    media = "application/json" if fmt == "json" else "text/csv; charset=utf-8"
    name = f"outlets.{fmt}"
    return Response(
        text, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )
