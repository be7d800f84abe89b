"""``/api/v1/catalogue``: import the service-item catalogue (事项清单) and list it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from fleet_server.api.auth import Authenticated
from fleet_server.api.deps import AppStateDep, SessionDep
from fleet_server.api.scope import WHOLE_FLEET_ONLY
from fleet_server.catalogue.importer import CatalogueError, import_rows, parse_catalogue
from fleet_server.catalogue.store import list_items
from fleet_server.models import CatalogueItem
from fleet_server.security import audit

router = APIRouter(prefix="/catalogue", tags=["catalogue"])

_MAX_UPLOAD = 32 * 1024 * 1024


class CatalogueItemPublic(BaseModel):
    """One service item as imported."""

    code: str
    base_code: str
    name: str
    level: int
    handling_type: str
    promised_days: int | None
    department: str
    outlet_kinds: list[str]
    region_codes: list[str]
    handling_mode: str
    target: str
    imported_at: datetime

    @classmethod
    def from_row(cls, row: CatalogueItem) -> CatalogueItemPublic:
        """Build from a table row."""
        return cls.model_validate(row, from_attributes=True)


class ImportResultPublic(BaseModel):
    """How many items the import created, updated and deleted."""

    created: int
    updated: int
    deleted: int


def _format(request: Request, fmt: str | None) -> Literal["csv", "json"]:
    chosen = fmt or ("json" if "json" in request.headers.get("content-type", "") else "csv")
    if chosen not in ("csv", "json"):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="format: csv or json")
    return "json" if chosen == "json" else "csv"


@router.post(
    "/import",
    # The catalogue is the whole province's: a region-scoped user may not replace it.
    dependencies=[WHOLE_FLEET_ONLY],
    response_model=ImportResultPublic,
    responses={422: {"description": "errors by row and field; nothing was imported"}},
)
async def import_catalogue(
    request: Request,
    state: AppStateDep,
    principal: Authenticated,
    fmt: Annotated[str | None, Query(alias="format")] = None,
    replace: bool = False,
) -> ImportResultPublic | JSONResponse:
    """Import the request body (CSV, or JSON with ``Content-Type: application/json``).

    All or nothing: any error answers 422 with ``errors`` [{row, field, message}].
    ``?replace=true`` also deletes items the file does not list.
    """
    data = await request.body()
    if len(data) > _MAX_UPLOAD:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail="file too large")
    chosen = _format(request, fmt)
    targets = state.targets.names if state.targets.targets else None
    try:
        rows = parse_catalogue(data, fmt=chosen, targets=targets)
    except CatalogueError as exc:
        return JSONResponse(
            {
                "detail": str(exc),
                "errors": [
                    {"row": e.row, "field": e.field, "message": e.message} for e in exc.errors
                ],
            },
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )

    def store() -> dict[str, int]:
        with state.sessions.begin() as session:
            counts = import_rows(session, rows, now=datetime.now(UTC), replace=replace)
            audit.record(
                session,
                actor=principal.name,
                action="catalogue.import",
                target="catalogue",
                after={"format": chosen, "replace": replace, "rows": len(rows), **counts},
            )
            return counts

    return ImportResultPublic(**await run_in_threadpool(store))


@router.get("/items")
def read_items(
    session: SessionDep, region: str | None = None, target: str | None = None
) -> list[CatalogueItemPublic]:
    """Every item by code; ``?region=330902`` keeps those handled there, ``?target=``."""
    return [
        CatalogueItemPublic.from_row(row)
        for row in list_items(session, region=region, target=target)
    ]
