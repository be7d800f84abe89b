"""``GET /api/v1/evaluations/figures``: the policy figures (``health.figures``) of the
caller's outlets per region, outlet kind or outlet over a chosen period."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from fleet_server.api.deps import AppStateDep, SessionDep
from fleet_server.api.evaluations import period
from fleet_server.api.scope import ScopeDep
from fleet_server.health.figures import (
    ITEM_TARGETS,
    TARGETS,
    FigureGroup,
    GroupBy,
    fleet_figures,
)

router = APIRouter(tags=["evaluations"])


class FiguresPublic(BaseModel):
    """The total and one row per group: every count and every rate (null: nothing to
    divide by); ``targets`` are the policy targets the figures are held to."""

    by: GroupBy
    since: datetime
    until: datetime
    targets: dict[str, float]
    service_item_targets: dict[str, int]
    total: dict[str, Any]
    rows: list[dict[str, Any]]


@router.get("/evaluations/figures")
def read_figures(
    session: SessionDep,
    state: AppStateDep,
    scope: ScopeDep,
    by: GroupBy = "region",
    since: datetime | None = None,
    until: datetime | None = None,
    region: Annotated[str | None, Query(pattern=r"^[0-9]{2,12}$")] = None,
    kind: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
    region_digits: Annotated[int, Query(ge=2, le=12)] = 6,
) -> FiguresPublic:
    """The figures (docs/fleet-health.md, "The policy figures") of the caller's outlets,
    narrowed to the ``region`` prefix and ``kind``, grouped ``by`` region (the first
    ``region_digits`` of the code), kind or outlet, from ``since`` to ``until`` (ISO 8601;
    default the last 30 days)."""
    now = datetime.now(UTC)
    start, end = period(since, until, now=now)
    total, rows = fleet_figures(
        session, by=by, since=start, until=end, now=now, scope=scope,
        region=region, kind=kind, region_digits=region_digits,
    )  # fmt: skip
    return FiguresPublic(
        by=by,
        since=start,
        until=end,
        targets=dict(TARGETS, active_evaluation_rate=state.rules.active_rate_target),
        service_item_targets=dict(ITEM_TARGETS),
        total=FigureGroup("", total).as_dict(),
        rows=[row.as_dict() for row in rows],
    )
