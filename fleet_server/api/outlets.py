"""``/api/v1/outlets``: the registry with each outlet's presence."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from fleet_server.api.deps import SessionDep
from fleet_server.api.schemas import ErrorPublic, OutletPublic, PresenceState
from fleet_server.ingest.registry import get_outlet, list_outlets

router = APIRouter(prefix="/outlets", tags=["outlets"])


@router.get("")
def read_outlets(session: SessionDep, state: PresenceState | None = None) -> list[OutletPublic]:
    """Every outlet, ordered by id; ``?state=online`` (etc.) filters by presence."""
    return [OutletPublic.from_row(row) for row in list_outlets(session, state=state)]


@router.get("/{outlet_id}", responses={status.HTTP_404_NOT_FOUND: {"model": ErrorPublic}})
def read_outlet(session: SessionDep, outlet_id: str) -> OutletPublic:
    """One outlet; 404 with ``{"detail": ...}`` if it is not registered."""
    row = get_outlet(session, outlet_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"outlet {outlet_id!r} not found")
    return OutletPublic.from_row(row)
