"""好差评 statistics per outlet and service window over a time range.

* ``evaluations``: evaluations made in the range;
* ``active_evaluation_rate``: evaluations a citizen made (not system defaults) ÷ cases
  (submissions received in the range), null without cases; policy target ≥ 60%
  (no official definition exists: see docs/evaluations.md for this working one);
* ``satisfaction_rate``: (非常满意 + 满意 + 基本满意) ÷ evaluations; ``average_score`` on the
  10/8/6/3/0 scale;
* ``bad_reviews``: 不满意 + 非常不满意; ``overdue_rectifications``: tickets of the range
  still open past their deadline, or closed after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet_server.evaluations.scoping import ALL_OUTLETS, OutletFilter
from fleet_server.models import Evaluation, InboxEntry, Rectification

__all__ = ["EvaluationStats", "evaluation_stats"]

_SCORES: Final = {5: 10, 4: 8, 3: 6, 2: 3, 1: 0}


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationStats:
    """Counters and rates for one outlet (or all) and one window (or all)."""

    outlet_id: str | None
    window: str | None
    since: datetime
    until: datetime
    cases: int
    evaluations: int
    active_evaluations: int
    default_evaluations: int  # 系统默认评价: made by the system, not the citizen
    active_evaluation_rate: float | None
    active_rate_target: float
    satisfaction_rate: float | None
    average_score: float | None
    by_level: dict[int, int]
    bad_reviews: int
    open_rectifications: int
    overdue_rectifications: int


def evaluation_stats(
    session: Session,
    *,
    outlet_id: str | None,
    window: str | None,
    since: datetime,
    until: datetime,
    now: datetime,
    active_rate_target: float,
    scope: OutletFilter = ALL_OUTLETS,
) -> EvaluationStats:
    """Compute the statistics from the ``evaluations``, ``inbox`` and ``rectifications``
    of the outlets in ``scope``."""
    ev = select(Evaluation.stars, Evaluation.is_default, func.count()).where(
        Evaluation.evaluated_at >= since, Evaluation.evaluated_at < until
    )
    cases_q = select(func.count()).where(
        InboxEntry.tx_kind == "submission",
        InboxEntry.received_at >= since,
        InboxEntry.received_at < until,
    )
    rect = select(Rectification).where(
        Rectification.opened_at >= since, Rectification.opened_at < until
    )
    ev = ev.where(scope.outlet_clause(Evaluation.outlet_id))
    cases_q = cases_q.where(scope.outlet_clause(InboxEntry.outlet_id))
    rect = rect.where(scope.outlet_clause(Rectification.outlet_id))
    if outlet_id is not None:
        ev = ev.where(Evaluation.outlet_id == outlet_id)
        cases_q = cases_q.where(InboxEntry.outlet_id == outlet_id)
        rect = rect.where(Rectification.outlet_id == outlet_id)
    if window is not None:
        ev = ev.where(Evaluation.window == window)
        cases_q = cases_q.where(InboxEntry.window == window)
        rect = rect.where(Rectification.window == window)
    by_level: dict[int, int] = dict.fromkeys(range(1, 6), 0)
    defaults = 0
    for stars, is_default, count in session.execute(
        ev.group_by(Evaluation.stars, Evaluation.is_default)
    ):
        by_level[int(stars)] += int(count)
        if is_default:
            defaults += int(count)
    total = sum(by_level.values())
    cases = int(session.scalar(cases_q) or 0)
    tickets = list(session.scalars(rect))
    overdue = sum(
        1
        for t in tickets
        if (t.status == "open" and t.deadline_at < now)
        or (t.closed_at is not None and t.closed_at > t.deadline_at)
    )
    active = total - defaults
    return EvaluationStats(
        outlet_id=outlet_id,
        window=window,
        since=since,
        until=until,
        cases=cases,
        evaluations=total,
        active_evaluations=active,
        default_evaluations=defaults,
        active_evaluation_rate=round(active / cases, 4) if cases else None,
        active_rate_target=active_rate_target,
        satisfaction_rate=round(sum(by_level[s] for s in (3, 4, 5)) / total, 4) if total else None,
        average_score=(
            round(sum(_SCORES[s] * n for s, n in by_level.items()) / total, 2) if total else None
        ),
        by_level=by_level,
        bad_reviews=by_level[1] + by_level[2],
        open_rectifications=sum(1 for t in tickets if t.status == "open"),
        overdue_rectifications=overdue,
    )
