"""``/api/v1/evaluations``: 好差评 statistics per outlet and service window."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel

from fleet_server.api.deps import AppStateDep, SessionDep
from fleet_server.api.scope import ScopeDep, in_scope_or_404
from fleet_server.evaluations.stats import evaluation_stats

router = APIRouter(prefix="/evaluations", tags=["evaluations"])

_DEFAULT_RANGE = timedelta(days=30)


class EvaluationStatsPublic(BaseModel):
    """See ``fleet_server.evaluations.stats`` for each figure's definition."""

    outlet_id: str | None
    window: str | None
    since: datetime
    until: datetime
    profile: str
    cases: int
    evaluations: int
    active_evaluations: int
    default_evaluations: int
    active_evaluation_rate: float | None
    active_rate_target: float
    meets_active_rate_target: bool | None
    satisfaction_rate: float | None
    average_score: float | None
    by_level: dict[int, int]
    bad_reviews: int
    open_rectifications: int
    overdue_rectifications: int


@router.get("/stats")
def read_stats(
    session: SessionDep,
    state: AppStateDep,
    scope: ScopeDep,
    outlet: str | None = None,
    window: Annotated[str | None, Query(description="service window (窗口) id")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> EvaluationStatsPublic:
    """Figures for ``outlet`` and ``window`` (all when omitted) from ``since`` to ``until``
    (ISO 8601; default the last 30 days). ``profile`` names the rules in force now: the
    outlet's own (from its config) when one is given, else the server's.
    """
    now = datetime.now(UTC)
    start, end = period(since, until, now=now)
    if outlet is not None:
        in_scope_or_404(session, scope, outlet, f"outlet {outlet!r}")
    rules = state.rules if outlet is None else state.rules_for(outlet)
    stats = evaluation_stats(
        session,
        outlet_id=outlet,
        window=window,
        since=start,
        until=end,
        now=now,
        active_rate_target=rules.active_rate_target,
        scope=scope,
    )
    rate = stats.active_evaluation_rate
    return EvaluationStatsPublic(
        **dataclasses.asdict(stats),
        profile=rules.name,
        meets_active_rate_target=None if rate is None else rate >= stats.active_rate_target,
    )


def period(
    since: datetime | None, until: datetime | None, *, now: datetime
) -> tuple[datetime, datetime]:
    """``[since, until)`` with the defaults (until now, since 30 days before ``until``);
    422 when ``since`` is not before ``until`` or the default start falls before year 1."""
    end = _aware(until) if until is not None else now
    try:
        start = _aware(since) if since is not None else end - _DEFAULT_RANGE
    except OverflowError:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail="until is too early for the default range: give since too",
        ) from None
    if start >= end:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="since must be < until")
    return start, end


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
