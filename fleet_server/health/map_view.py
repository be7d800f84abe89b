"""What the map page needs besides the points (``queries.map_points``): the outlets it
cannot place, and the names of the points when there are few enough to label them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from fleet_server.health.tables import OutletProfile
from fleet_server.models import Agent, Outlet
from fleet_server.security.scope import WHOLE_FLEET, Scope

# Names drawn beside the points up to this many outlets (more would be a smear); above
# it the names are not even sent: a click on a point fetches that outlet.
LABEL_LIMIT = 60
# Outlets without coordinates listed by name; the rest are a count (the outlet list
# finds them).
UNPLACED_LIMIT = 200


def map_extras(session: Session, scope: Scope = WHOLE_FLEET) -> dict[str, Any]:
    """``unplaced``: up to ``UNPLACED_LIMIT`` outlets in ``scope`` without coordinates
    (id, name, state) and ``unplaced_total``; ``labels``: id → name and kind of every
    placed outlet when there are at most ``LABEL_LIMIT`` of them, else empty."""
    placed = and_(OutletProfile.latitude.is_not(None), OutletProfile.longitude.is_not(None))
    in_scope = scope.region_clause(OutletProfile.region_code)
    state = func.coalesce(Agent.state, "unknown")
    unplaced = [
        tuple(row)
        for row in session.execute(
            select(OutletProfile.outlet_id, OutletProfile.name, state)
            .outerjoin(Agent, Agent.outlet_id == OutletProfile.outlet_id)
            .where(~placed, in_scope)
        )
    ]
    if scope.whole_fleet:
        # Registered outlets with no profile at all (a scoped user never sees those: no
        # region, so outside every scope).
        unplaced += [
            tuple(row)
            for row in session.execute(
                select(Outlet.id, Outlet.display_name, state)
                .outerjoin(Agent, Agent.outlet_id == Outlet.id)
                .outerjoin(OutletProfile, OutletProfile.outlet_id == Outlet.id)
                .where(OutletProfile.outlet_id.is_(None))
            )
        ]
    unplaced.sort(key=lambda row: str(row[0]))
    labels: dict[str, dict[str, Any]] = {}
    count = session.scalar(select(func.count()).select_from(OutletProfile).where(placed, in_scope))
    if int(count or 0) <= LABEL_LIMIT:
        labels = {
            outlet_id: {"name": name or outlet_id, "kind": kind}
            for outlet_id, name, kind in session.execute(
                select(OutletProfile.outlet_id, OutletProfile.name, OutletProfile.kind).where(
                    placed, in_scope
                )
            )
        }
    return {
        "unplaced": [
            {"outlet_id": outlet_id, "name": name or outlet_id, "state": st}
            for outlet_id, name, st in unplaced[:UNPLACED_LIMIT]
        ],
        "unplaced_total": len(unplaced),
        "labels": labels,
    }
