"""Rules read from the server's own records rather than from an outlet's reported facts:
dead letters, 差评 rectifications, the week's active evaluation rate, client
certificates, and each upstream target's circuit breaker.

``RecordRules.conditions`` returns what holds; the engine reconciles them with the rest
(docs/fleet-health.md, "Alerts"). The evaluation rate reads a week of cases and
evaluations, so it is recomputed at most every ``rates_every_s``, not every period.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet_server.alerts.conditions import Condition
from fleet_server.alerts.rules import DEFAULT_RULES, RuleBook
from fleet_server.campaigns.alerting import CAMPAIGN_OUTLET
from fleet_server.health.figures import FigureCounts, record_counts
from fleet_server.health.tables import OutletProfile
from fleet_server.models import Certificate, DeadLetter, Rectification

__all__ = ["BreakerStates", "RecordRules"]

# Each upstream target's breaker state ("closed", "open", "half_open") in this process.
BreakerStates = Callable[[], Mapping[str, str]]
_MAX_IDS: Final = 20  # ticket ids named in an alert's detail


class RecordRules:
    """The record-based rules of one engine; ``breakers`` is set once delivery runs."""

    def __init__(self, *, rates_every_s: float = 60.0) -> None:
        self.breakers: BreakerStates | None = None
        self._rates_every_s = rates_every_s
        # days -> (when read, counts per outlet)
        self._rates: dict[int, tuple[float, dict[str, FigureCounts]]] = {}

    def conditions(self, session: Session, book: RuleBook, *, now: datetime) -> list[Condition]:
        """Every record-based condition holding at ``now``."""
        profiles = {
            row.outlet_id: (row.region_code, row.kind)
            for row in session.execute(
                select(OutletProfile.outlet_id, OutletProfile.region_code, OutletProfile.kind)
            )
        }

        def rules(outlet_id: str) -> dict[str, dict[str, Any]]:
            region, kind = profiles.get(outlet_id, (None, None))
            return book.for_outlet(outlet_id=outlet_id, region_code=region, kind=kind)

        found = self._dead_letters(session, rules)
        found += self._overdue(session, rules, now=now)
        found += self._rates_low(session, rules, profiles, now=now)
        found += self._certificates(session, rules, now=now)
        found += self._breakers(book)
        return found

    @staticmethod
    def _dead_letters(
        session: Session, rules: Callable[[str], dict[str, dict[str, Any]]]
    ) -> list[Condition]:
        found = []
        rows = session.execute(
            select(DeadLetter.outlet_id, func.count(), func.max(DeadLetter.created_at))
            .where(DeadLetter.replayed_at.is_(None))
            .group_by(DeadLetter.outlet_id)
        )
        for outlet_id, count, newest in rows:
            params = rules(outlet_id)["dead_letters"]
            if params["enabled"] and count >= int(params["min_count"]):
                found.append(_condition(
                    "dead_letters", outlet_id, params,
                    f"outlet {outlet_id}: {count} transactions in dead letters",
                    float(count), newest=newest.isoformat(),
                ))  # fmt: skip
        return found

    @staticmethod
    def _overdue(
        session: Session, rules: Callable[[str], dict[str, dict[str, Any]]], *, now: datetime
    ) -> list[Condition]:
        tickets: dict[str, list[tuple[int, datetime]]] = {}
        for ticket_id, outlet_id, deadline in session.execute(
            select(Rectification.id, Rectification.outlet_id, Rectification.deadline_at)
            .where(Rectification.status == "open", Rectification.deadline_at < now)
            .order_by(Rectification.deadline_at)
        ):
            tickets.setdefault(outlet_id, []).append((ticket_id, deadline))
        found = []
        for outlet_id, due in tickets.items():
            params = rules(outlet_id)["rectification_overdue"]
            if params["enabled"]:
                found.append(_condition(
                    "rectification_overdue", outlet_id, params,
                    f"outlet {outlet_id}: {len(due)} 差评 rectifications overdue",
                    float(len(due)), tickets=[t for t, _ in due[:_MAX_IDS]],
                    oldest_deadline=due[0][1].isoformat(),
                ))  # fmt: skip
        return found

    def _rates_low(
        self,
        session: Session,
        rules: Callable[[str], dict[str, dict[str, Any]]],
        profiles: Mapping[str, object],
        *,
        now: datetime,
    ) -> list[Condition]:
        found = []
        default_days = int(DEFAULT_RULES["evaluation_rate_low"]["days"])
        for outlet_id in sorted({*profiles, *self._week(session, default_days, now=now)}):
            params = rules(outlet_id)["evaluation_rate_low"]
            if not params["enabled"]:
                continue
            days = int(params["days"])
            counts = self._week(session, days, now=now).get(outlet_id)
            if counts is None or counts.cases < int(params["min_cases"]):
                continue
            rate = counts.active_evaluations / counts.cases
            if rate < float(params["min_rate"]):
                found.append(_condition(
                    "evaluation_rate_low", outlet_id, params,
                    f"outlet {outlet_id}: active evaluation rate {rate:.0%} over {days} days",
                    round(rate, 4), cases=counts.cases,
                    active_evaluations=counts.active_evaluations,
                    min_rate=float(params["min_rate"]), days=days,
                ))  # fmt: skip
        return found

    def _week(self, session: Session, days: int, *, now: datetime) -> dict[str, FigureCounts]:
        """Cases and evaluations per outlet over the last ``days`` (cached per ``days``)."""
        at, counts = self._rates.get(days, (-1e9, {}))
        if time.monotonic() - at < self._rates_every_s:
            return counts
        counts = record_counts(session, since=now - timedelta(days=days), until=now, now=now)
        self._rates[days] = (time.monotonic(), counts)
        return counts

    @staticmethod
    def _certificates(
        session: Session, rules: Callable[[str], dict[str, dict[str, Any]]], *, now: datetime
    ) -> list[Condition]:
        found = []
        rows = session.execute(
            select(Certificate.outlet_id, func.max(Certificate.not_after))
            .where(Certificate.revoked_at.is_(None))
            .group_by(Certificate.outlet_id)
        )
        for outlet_id, not_after in rows:
            params = rules(outlet_id)["certificate_expiring"]
            left = not_after - now
            if params["enabled"] and left < timedelta(days=float(params["within_days"])):
                days_left = round(left.total_seconds() / 86_400, 1)
                summary = (
                    f"outlet {outlet_id}: certificate expired {-days_left} days ago"
                    if days_left < 0
                    else f"outlet {outlet_id}: certificate expires in {days_left} days"
                )
                found.append(_condition("certificate_expiring", outlet_id, params, summary,
                                        days_left, not_after=not_after.isoformat()))  # fmt: skip
        return found

    def _breakers(self, book: RuleBook) -> list[Condition]:
        if self.breakers is None:
            return []
        params = book.for_outlet(outlet_id=CAMPAIGN_OUTLET, region_code=None, kind=None)[
            "upstream_breaker_open"
        ]
        if not params["enabled"]:
            return []
        return [
            Condition(
                rule="upstream_breaker_open", outlet_id=CAMPAIGN_OUTLET,
                device_id=f"target:{target}", severity=str(params["severity"]),
                summary=f"upstream target {target}: circuit breaker {state}",
                value=None, detail={"target": target, "state": state},
            )
            for target, state in sorted(self.breakers().items())
            if state != "closed"
        ]  # fmt: skip


def _condition(
    rule: str, outlet_id: str, params: dict[str, Any], summary: str, value: float, **detail: Any
) -> Condition:
    return Condition(
        rule=rule,
        outlet_id=outlet_id,
        device_id="",
        severity=str(params["severity"]),
        summary=summary,
        value=value,
        detail=detail,
    )
