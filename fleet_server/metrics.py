"""``/metrics`` in the Prometheus text format, from one registry per app.

Counters and gauges are read at scrape time from the objects that own them (ingest
stats, the rate limiter, the time-series sink, the alert engine and the webhook
notifier), so the hot path pays nothing for them; only database latency is a
histogram observed as it happens. Outlet ids never become labels (cardinality);
``GET /api/v1/ingest/rate-limits`` names the worst outlets instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fleet_server.alerts.engine import AlertEngine
from fleet_server.alerts.notify import WebhookNotifier
from fleet_server.campaigns.stats import CampaignStats
from fleet_server.config.stats import ConfigStats
from fleet_server.config.store import REFUSALS as CONFIG_REFUSALS
from fleet_server.health.figures import ITEM_TARGETS, TARGETS, FigureCounts
from fleet_server.ingest import Ingest
from fleet_server.ingest.ratelimit import OutletRateLimiter
from fleet_server.timeseries.sink import TelemetrySink


@dataclass(slots=True, kw_only=True)
class MetricSources:
    """Whatever exists in this process; None parts are simply not exported."""

    ingest: Ingest | None = None
    limiter: OutletRateLimiter | None = None
    sink: TelemetrySink | None = None
    engine: AlertEngine | None = None
    notifier: WebhookNotifier | None = None
    recorder_errors: Callable[[], int] | None = None
    live_share_errors: Callable[[], int] | None = None
    # Slow figures read from the database (cached by the provider): outlets by state
    # and fleet-wide 好差评 over 30 days.
    fleet_figures: Callable[[], dict[str, dict[str, float]]] | None = None
    # The policy figures' counts over 30 days per (region prefix, outlet kind), cached
    # by the provider (fleet_server.health.figures).
    policy_figures: Callable[[], dict[tuple[str, str], FigureCounts]] | None = None
    # Outlets by (region prefix, presence), cached by the provider
    # (fleet_server.health.presence_regions): what a county's Grafana dashboards count.
    region_presence: Callable[[], dict[tuple[str, str], int]] | None = None
    # HTTP requests refused before their body was read, by reason (api.limits), and
    # those answered 503 while the database was unreachable (db_outage).
    http_refused: Counter[str] | None = None
    # The per-outlet 好差评 rules' failed re-reads and invalid evaluation parts, by kind.
    evaluation_rules_errors: Callable[[], dict[str, int]] | None = None
    # Desired configs: signing key, published, refused, drifting (fleet_server.config).
    config: ConfigStats | None = None
    # Release uploads refused, by reason (fleet_server.releases.api).
    release_refused: Counter[str] | None = None
    # Update campaigns: offers sent, reports ignored, campaigns by state.
    campaigns: CampaignStats | None = None
    # Playbook runs refused (unknown playbook, bad extra vars, bad target), by reason.
    playbook_refused: Counter[str] | None = None
    # Outlet registry imports refused (invalid rows, rows outside the scope), by reason.
    registry_refused: Counter[str] | None = None
    region_refused: Counter[str] | None = None


class _FleetCollector(Collector):
    def __init__(self, sources: MetricSources) -> None:
        self._s = sources

    def collect(self) -> Iterator[Metric]:
        s = self._s
        if s.ingest is not None:
            snap = s.ingest.stats.snapshot(queue_depth=s.ingest.queue_depth)
            yield CounterMetricFamily(
                "govedge_ingest_received", "MQTT messages received", value=snap.received
            )
            yield CounterMetricFamily(
                "govedge_ingest_accepted", "Messages applied", value=snap.accepted
            )
            rejected = CounterMetricFamily(
                "govedge_ingest_rejected", "Messages dropped or ignored", labels=["reason"]
            )
            for reason, count in sorted(snap.rejected.items()):
                rejected.add_metric([reason], count)
            yield rejected
            refused = CounterMetricFamily(
                "govedge_transactions_refused",
                "Transactions acked rejected, by reason (body, material, outlet bytes per day)",
                labels=["reason"],
            )
            for reason, count in sorted(snap.noted.items()):
                if reason.startswith(("tx_rejected_", "material_rejected_")):
                    refused.add_metric([reason.partition("rejected_")[2]], count)
            yield refused
            yield CounterMetricFamily(
                "govedge_ingest_session_resyncs",
                "Outlets behind their known session told to reconnect above it",
                value=snap.noted.get("session_resync_requested", 0),
            )
            yield CounterMetricFamily(
                "govedge_ingest_batches", "Batches committed", value=snap.batches_committed
            )
            yield CounterMetricFamily(
                "govedge_ingest_db_errors", "Failed batch writes", value=snap.db_errors
            )
            yield GaugeMetricFamily(
                "govedge_ingest_queue_depth", "Messages waiting", value=snap.queue_depth
            )
            yield GaugeMetricFamily(
                "govedge_ingest_queue_bytes", "Bytes waiting", value=s.ingest.queue_bytes
            )
            yield GaugeMetricFamily(
                "govedge_broker_connected", "1 when subscribed", value=int(snap.broker_connected)
            )
        if s.limiter is not None:
            yield CounterMetricFamily(
                "govedge_ingest_rate_limited",
                "Messages refused by per-outlet rate limits",
                value=s.limiter.total_excess,
            )
        if s.sink is not None:
            st = s.sink.stats()
            yield GaugeMetricFamily(
                "govedge_timeseries_buffered", "Lines waiting for the store", value=st.buffered
            )
            yield CounterMetricFamily(
                "govedge_timeseries_written", "Lines written", value=st.written
            )
            yield CounterMetricFamily(
                "govedge_timeseries_dropped", "Lines dropped (oldest first)", value=st.dropped
            )
            yield CounterMetricFamily(
                "govedge_timeseries_write_errors", "Failed writes", value=st.write_errors
            )
        if s.engine is not None:
            yield GaugeMetricFamily(
                "govedge_alerts_open",
                "Open alerts at the last evaluation",
                value=s.engine.open_count,
            )
            yield CounterMetricFamily(
                "govedge_alert_evaluations", "Rule evaluations", value=s.engine.evaluations
            )
            yield CounterMetricFamily(
                "govedge_alert_evaluation_errors",
                "Rule evaluations that failed (changed no alert; the next one runs as usual)",
                value=s.engine.errors,
            )
            yield GaugeMetricFamily(
                "govedge_alert_engine_leader",
                "1 if this process is the alert-engine leader (evaluates and notifies)",
                value=1 if s.engine.leader.leading else 0,
            )
        if s.notifier is not None:
            sent = CounterMetricFamily(
                "govedge_alert_webhooks", "Webhook deliveries", labels=["outcome"]
            )
            sent.add_metric(["sent"], s.notifier.sent)
            sent.add_metric(["retried"], s.notifier.retried)
            sent.add_metric(["failed"], s.notifier.failed)
            yield sent
            yield GaugeMetricFamily(
                "govedge_alert_webhooks_pending", "Deliveries waiting", value=s.notifier.pending
            )
        if s.fleet_figures is not None:
            figures = s.fleet_figures()
            outlets = GaugeMetricFamily("govedge_outlets", "Outlets by presence", labels=["state"])
            for state, outlet_count in sorted(figures.get("outlets", {}).items()):
                outlets.add_metric([state], outlet_count)
            yield outlets
            for name, value in sorted(figures.get("evaluations", {}).items()):
                yield GaugeMetricFamily(f"govedge_evaluations_{name}", f"好差评 {name}, 30 days",
                                        value=value)  # fmt: skip
        if s.policy_figures is not None:
            yield from policy_metrics(s.policy_figures())
        if s.region_presence is not None:
            yield region_presence_metric(s.region_presence())
        if s.http_refused is not None:
            refused = CounterMetricFamily(
                "govedge_http_refused",
                "HTTP requests refused by size, rate or an unreachable database",
                labels=["reason"],
            )
            for reason in ("database_unavailable", "rate_limited", "too_large"):
                refused.add_metric([reason], s.http_refused[reason])
            yield refused
        if s.evaluation_rules_errors is not None:
            errors = CounterMetricFamily(
                "govedge_evaluation_rules_errors",
                "Per-outlet 好差评 rules: failed re-reads, invalid evaluation configs",
                labels=["kind"],
            )
            for kind, count in sorted(s.evaluation_rules_errors().items()):
                errors.add_metric([kind], count)
            yield errors
        if s.config is not None:
            yield from _config_metrics(s.config)
        if s.campaigns is not None:
            yield from _campaign_metrics(s.campaigns)
        config_refused = CounterMetricFamily(
            "govedge_config_writes_refused", "Config writes refused, by reason", labels=["reason"]
        )
        for reason, count in sorted(CONFIG_REFUSALS.items()):
            config_refused.add_metric([reason], count)
        yield config_refused
        if s.release_refused is not None:
            releases = CounterMetricFamily(
                "govedge_release_refused", "Release uploads refused", labels=["reason"]
            )
            for reason, count in sorted(s.release_refused.items()):
                releases.add_metric([reason], count)
            yield releases
        if s.playbook_refused is not None:
            playbooks = CounterMetricFamily(
                "govedge_playbook_runs_refused", "Playbook runs refused", labels=["reason"]
            )
            for reason, count in sorted(s.playbook_refused.items()):
                playbooks.add_metric([reason], count)
            yield playbooks
        if s.registry_refused is not None:
            registry = CounterMetricFamily(
                "govedge_registry_imports_refused", "Outlet registry imports refused",
                labels=["reason"],
            )  # fmt: skip
            for reason, count in sorted(s.registry_refused.items()):
                registry.add_metric([reason], count)
            yield registry
        if s.region_refused is not None:
            regions = CounterMetricFamily(
                "govedge_region_imports_refused", "Region file imports refused",
                labels=["reason"],
            )  # fmt: skip
            for reason, count in sorted(s.region_refused.items()):
                regions.add_metric([reason], count)
            yield regions
        if s.recorder_errors is not None:
            yield CounterMetricFamily(
                "govedge_health_write_errors", "Failed device-health writes",
                value=s.recorder_errors(),
            )  # fmt: skip
        if s.live_share_errors is not None:
            yield CounterMetricFamily(
                "govedge_live_share_errors",
                "Failed reads or writes of the change number the server processes share",
                value=s.live_share_errors(),
            )


# Each count of FigureCounts, exported as govedge_figure_<name>{region,kind}: Grafana
# divides sums of them (a mean of per-group rates would weigh a village like a city).
_FIGURE_HELP: dict[str, str] = {
    "outlets": "Outlets with a profile",
    "cases": "Submissions received (cases), 30 days",
    "evaluations": "好差评 evaluations, 30 days",
    "active_evaluations": "Evaluations citizens made (system defaults excluded), 30 days",
    "satisfied": "Evaluations 基本满意 or better, 30 days",
    "bad_reviews": "差评 (不满意, 非常不满意), 30 days",
    "rectifications": "Rectification tickets opened, 30 days",
    "followed_up": "Tickets of the 30 days with at least one follow-up",
    "rectifications_due": "Tickets of the 30 days closed or past their deadline",
    "rectified_on_time": "Tickets of the 30 days closed by their deadline",
    "overdue_open": "Tickets of the 30 days open past their deadline",
    "nearby_outlets": "Outlets with catalogue items assigned to their kind and region",
    "nearby_complete": "Outlets handling every item assigned to them (就近可办)",
    "nearby_items_assigned": "Catalogue items assigned, summed over outlets",
    "nearby_items_handled": "Assigned items the outlets handle, summed",
    "centres": "Township and street centres",
    "centres_with_kiosk": "Centres with a 24-hour kiosk outlet in their region",
    "item_target_outlets": "Outlets whose level has a service-item target",
    "item_target_met": "Outlets listing at least their level's service items",
    "service_items": "Service items listed, summed over outlets",
}


def region_presence_metric(groups: dict[tuple[str, str], int]) -> Metric:
    """``govedge_region_outlets{region,state}``."""
    family = GaugeMetricFamily("govedge_region_outlets", "Outlets by region prefix and presence",
                               labels=["region", "state"])  # fmt: skip
    for (region, state), count in sorted(groups.items()):
        family.add_metric([region, state], float(count))
    return family


def policy_metrics(groups: dict[tuple[str, str], FigureCounts]) -> Iterator[Metric]:
    for name, help_text in _FIGURE_HELP.items():
        family = GaugeMetricFamily(f"govedge_figure_{name}", help_text, labels=["region", "kind"])
        for (region, kind), counts in sorted(groups.items()):
            family.add_metric([region, kind], getattr(counts, name))
        yield family
    targets = GaugeMetricFamily(
        "govedge_figure_target", "Policy target of a figure (a share)", labels=["figure"]
    )
    for figure, value in sorted(TARGETS.items()):
        targets.add_metric([figure], value)
    yield targets
    items = GaugeMetricFamily(
        "govedge_figure_service_items_target", "Service items an outlet of the kind must list",
        labels=["kind"],
    )  # fmt: skip
    for kind, value in sorted(ITEM_TARGETS.items()):
        items.add_metric([kind], value)
    yield items


def _campaign_metrics(stats: CampaignStats) -> Iterator[Metric]:
    counts, ignored, by_state = stats.snapshot()
    yield CounterMetricFamily(
        "govedge_campaign_offers_sent",
        "Update offers published",
        value=counts.get("offers_sent", 0),
    )
    yield CounterMetricFamily(
        "govedge_campaign_reports", "Update reports received", value=counts.get("reports", 0)
    )
    yield CounterMetricFamily(
        "govedge_campaign_timeouts", "Outlets failed for silence", value=counts.get("timeouts", 0)
    )
    yield CounterMetricFamily(
        "govedge_campaign_auto_pauses",
        "Campaigns the engine paused",
        value=counts.get("auto_pauses", 0),
    )
    reports = CounterMetricFamily(
        "govedge_campaign_reports_ignored", "Update reports ignored, by reason", labels=["reason"]
    )
    for reason, count in sorted(ignored.items()):
        reports.add_metric([reason], count)
    yield reports
    states = GaugeMetricFamily(
        "govedge_campaigns", "Campaigns by state (last engine tick)", labels=["state"]
    )
    for state, count in sorted(by_state.items()):
        states.add_metric([state], count)
    yield states


def _config_metrics(stats: ConfigStats) -> Iterator[Metric]:
    snap = stats.snapshot()
    yield GaugeMetricFamily(
        "govedge_config_signing_key",
        "1 when a config-signing key is loaded (0: no configs are published)",
        value=int(snap.signing_key),
    )
    yield CounterMetricFamily(
        "govedge_config_published", "Signed configs the broker acknowledged", value=snap.published
    )
    yield CounterMetricFamily(
        "govedge_config_republished",
        "Envelopes published again for agents that missed them",
        value=snap.republished,
    )
    server = CounterMetricFamily(
        "govedge_config_refused_by_server",
        "Effective configs the server would not sign, by reason",
        labels=["reason"],
    )
    for reason in ("invalid", "oversize"):
        server.add_metric([reason], snap.refused_by_server.get(reason, 0))
    yield server
    agents = CounterMetricFamily(
        "govedge_config_refused_by_agents", "Refusals agents reported, by reason", labels=["reason"]
    )
    for reason, count in sorted(snap.refused_by_agents.items()):
        agents.add_metric([reason], count)
    yield agents
    dropped = CounterMetricFamily(
        "govedge_config_reports_dropped", "Births/reports not stored, by reason", labels=["reason"]
    )
    for reason, count in sorted(snap.dropped.items()):
        dropped.add_metric([reason], count)
    yield dropped
    yield GaugeMetricFamily(
        "govedge_config_outlets_drifting", "Outlets out of sync (last pass)", value=snap.drifting
    )
    yield GaugeMetricFamily(
        "govedge_config_outlets_held", "Outlets with a change held for closed hours",
        value=snap.held,
    )  # fmt: skip
    yield CounterMetricFamily(
        "govedge_config_pass_errors", "Reconciler passes that failed", value=snap.pass_errors
    )


class FleetMetrics:
    """The app's registry: the collector plus the database latency histogram."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.http_refused: Counter[str] = Counter()
        self.release_refused: Counter[str] = Counter()
        self.playbook_refused: Counter[str] = Counter()
        self.registry_refused: Counter[str] = Counter()
        self.region_refused: Counter[str] = Counter()
        self.sources = MetricSources(
            http_refused=self.http_refused,
            release_refused=self.release_refused,
            playbook_refused=self.playbook_refused,
            registry_refused=self.registry_refused,
            region_refused=self.region_refused,
        )
        self.registry.register(_FleetCollector(self.sources))
        self.db_latency = Histogram(
            "govedge_db_latency_seconds",
            "Database transaction latency by operation",
            ["op"],
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    def observe_db(self, op: str, seconds: float) -> None:
        """Record one database operation's duration."""
        self.db_latency.labels(op).observe(seconds)

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)
