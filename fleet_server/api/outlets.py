"""``/api/v1/outlets``: the registry with each outlet's presence, a page at a time."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel

from fleet_server.api.deps import SessionDep
from fleet_server.api.schemas import ErrorPublic, OutletPublic, PresenceState
from fleet_server.api.scope import ScopeDep
from fleet_server.ingest.registry import get_outlet, page_outlets

router = APIRouter(prefix="/outlets", tags=["outlets"])

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Past any real fleet; bounded so a huge offset is a 422, not a database integer overflow.
MAX_OFFSET = 10_000_000


class OutletPagePublic(BaseModel):
    """One page of outlets; ``total`` counts every outlet the filters match."""

    items: list[OutletPublic]
    total: int
    limit: int
    offset: int


@router.get("")
def read_outlets(
    session: SessionDep,
    scope: ScopeDep,
    state: PresenceState | None = None,
    q: Annotated[str | None, Query(max_length=64, description="id or name prefix")] = None,
    sort: Literal["id", "name", "state", "last_seen"] = "id",
    order: Literal["asc", "desc"] = "asc",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> OutletPagePublic:
    """A page of outlets (``limit``/``offset``), filtered by ``state`` and ``q``, sorted."""
    page = page_outlets(
        session,
        state=state,
        search=q,
        sort=sort,
        descending=order == "desc",
        limit=limit,
        offset=offset,
        scope=scope,
    )
    return OutletPagePublic(
        items=[OutletPublic.from_row(row) for row in page.rows],
        total=page.total,
        limit=limit,
        offset=offset,
    )


@router.get("/{outlet_id}", responses={status.HTTP_404_NOT_FOUND: {"model": ErrorPublic}})
def read_outlet(session: SessionDep, outlet_id: str) -> OutletPublic:
    """One outlet; 404 with ``{"detail": ...}`` if it is not registered (or, for a
    scoped user, outside their scope: ``fleet_server.api.scope.path_guard``)."""
    row = get_outlet(session, outlet_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"outlet {outlet_id!r} not found")
    return OutletPublic.from_row(row)
