"""Outlets by presence per region prefix, for ``govedge_region_outlets{region,state}``.

``govedge_outlets{state}`` is one fleet total, so a county's Grafana dashboards
(``fleet_server.grafana.scoping``) cannot cut it; this family carries the region,
cut to ``GOVEDGE_METRICS_REGION_DIGITS`` like the policy figures' (a deeper label would
multiply the series by the towns). Outlets without a profile region are in no group,
as they are in no scope.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet_server.health.tables import OutletProfile
from fleet_server.models import Agent
from fleet_server.security.scope import WHOLE_FLEET, Scope


def presence_by_region(
    session: Session, *, region_digits: int, scope: Scope = WHOLE_FLEET
) -> dict[tuple[str, str], int]:
    """(region prefix, presence state) → outlets, over ``scope``'s outlets."""
    region = func.substr(OutletProfile.region_code, 1, region_digits)
    rows = session.execute(
        select(region, Agent.state, func.count())
        .join(OutletProfile, OutletProfile.outlet_id == Agent.outlet_id)
        .where(OutletProfile.region_code.is_not(None))
        .where(scope.region_clause(OutletProfile.region_code))
        .group_by(region, Agent.state)
    )
    return {(str(code), str(state)): int(n) for code, state, n in rows}
