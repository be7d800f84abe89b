"""``/metrics``: the whole fleet's exposition (``fleet_server.metrics``), or for a
region-scoped user the series about outlets counted over the user's outlets only
(docs/security.md, "Scoped operators"); ``fleet_server.api.scope.metrics_access``
decides which.

The whole-fleet exposition (``fleet_server.metrics``) also carries the server's own
counters (ingest, HTTP refusals, database latency, webhooks): those describe every
outlet's traffic and are left out here, as the ingest and time-series stats routes
refuse scoped users. What remains, read from the database on each scrape (scoped
users are few, and the whole-fleet cache cannot be cut afterwards):

- ``govedge_outlets{state}``: the scope's outlets by presence;
- ``govedge_alerts_open``: open alerts of the scope's outlets;
- ``govedge_evaluations_*``: the 30-day 好差评 figures of the scope's outlets;
- ``govedge_figure_*{region,kind}``: the policy figures' counts, the region label cut
  to no fewer digits than the longest prefix of the scope (a county operator's series
  say the county, not the city around it), and the targets;
- ``govedge_region_outlets{region,state}``: the scope's outlets by presence, the region
  cut the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.api.auth import SecurityDep
from fleet_server.api.deps import AppStateDep
from fleet_server.api.scope import metrics_access
from fleet_server.evaluations.stats import evaluation_stats
from fleet_server.health.figures import figures_by_region_and_kind
from fleet_server.health.presence_regions import presence_by_region
from fleet_server.health.tables import Alert
from fleet_server.metrics import FleetMetrics, policy_metrics, region_presence_metric
from fleet_server.models import Agent
from fleet_server.security.scope import Scope
from fleet_server.settings import Settings


def region_digits(scope: Scope, configured: int) -> int:
    """The region label's length for ``scope``: the configured depth, or the longest
    prefix of the scope when that is deeper."""
    return max([configured, *(len(prefix) for prefix in scope.prefixes)])


class _ScopedCollector(Collector):
    def __init__(self, session: Session, scope: Scope, settings: Settings) -> None:
        self._session = session
        self._scope = scope
        self._settings = settings

    def collect(self) -> Iterator[Metric]:
        session, scope = self._session, self._scope
        outlets = GaugeMetricFamily("govedge_outlets", "Outlets by presence", labels=["state"])
        rows = session.execute(
            select(Agent.state, func.count())
            .where(scope.outlet_clause(Agent.outlet_id))
            .group_by(Agent.state)
        )
        for state, count in sorted((str(r[0]), int(r[1])) for r in rows):
            outlets.add_metric([state], float(count))
        yield outlets
        open_alerts = session.scalar(
            select(func.count())
            .select_from(Alert)
            .where(Alert.state == "open", scope.outlet_clause(Alert.outlet_id))
        )
        yield GaugeMetricFamily(
            "govedge_alerts_open", "Open alerts of the scope's outlets", value=open_alerts or 0
        )
        until = datetime.now(UTC)
        since = until - timedelta(days=30)
        stats = evaluation_stats(
            session, outlet_id=None, window=None, since=since, until=until, now=until,
            active_rate_target=self._settings.evaluation_rules.active_rate_target, scope=scope,
        )  # fmt: skip
        figures = {
            "active_rate": stats.active_evaluation_rate or 0.0,
            "active_rate_target": stats.active_rate_target,
            "satisfaction_rate": stats.satisfaction_rate or 0.0,
            "bad_reviews": float(stats.bad_reviews),
            "overdue_rectifications": float(stats.overdue_rectifications),
            "count": float(stats.evaluations),
        }
        for name, value in sorted(figures.items()):
            yield GaugeMetricFamily(f"govedge_evaluations_{name}", f"好差评 {name}, 30 days",
                                    value=value)  # fmt: skip
        digits = region_digits(scope, self._settings.metrics_region_digits)
        groups = figures_by_region_and_kind(
            session, since=since, until=until, now=until, scope=scope, region_digits=digits
        )
        yield from policy_metrics(groups)
        yield region_presence_metric(presence_by_region(session, region_digits=digits, scope=scope))


def render_scoped(sessions: sessionmaker[Session], scope: Scope, settings: Settings) -> bytes:
    """The exposition text of ``scope``'s series."""
    with sessions() as session:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_ScopedCollector(session, scope, settings))
        return generate_latest(registry)


router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
def metrics(
    request: Request,
    security: SecurityDep,
    state: AppStateDep,
    scope: Annotated[Scope, Depends(metrics_access)],
) -> Response:
    """Prometheus text format."""
    if scope.whole_fleet:
        fleet_metrics: FleetMetrics = request.app.state.metrics
        body = fleet_metrics.render()
    else:
        body = render_scoped(state.sessions, scope, security.settings)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
