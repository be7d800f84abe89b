"""The server process's long-running parts, wired together in one place.

``ServerRuntime`` builds and starts, in order, the health parts, the ingest, delivery
upstream, the config reconciler and the purge of delivered bodies, and stops them in
reverse; the app's lifespan only calls it. ``HealthRuntime`` holds the rate limiter and
recorder the ingest takes, the time-series sink, webhook notifier and alert engine, and
feeds ``/metrics``. This module sits above the packages it wires, so none of them
imports another upwards (docs/development.md, "Import layers").
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.alerts.engine import AlertEngine
from fleet_server.alerts.leader import Leadership, NeverLeader, leadership_for
from fleet_server.alerts.notify import WebhookNotifier
from fleet_server.alerts.outlet_pass import OutletPassProcess
from fleet_server.alerts.robots import Destination, DingTalkRobot, WeComRobot
from fleet_server.alerts.rules import check_override
from fleet_server.api.deps import AppState
from fleet_server.campaigns.engine import CampaignEngine
from fleet_server.campaigns.reports import UpdateReports
from fleet_server.campaigns.stats import CampaignStats
from fleet_server.config.evaluation_rules import OutletEvaluationRules
from fleet_server.config.keys import load_config_keys
from fleet_server.config.reconcile import Reconciler
from fleet_server.config.reports import ReportDesk
from fleet_server.config.stats import ConfigStats
from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.evaluations.stats import evaluation_stats
from fleet_server.health.figures import FigureCounts, figures_by_region_and_kind
from fleet_server.health.live import LiveHub
from fleet_server.health.live_share import LiveShare
from fleet_server.health.presence_regions import presence_by_region
from fleet_server.health.queries import outlet_regions
from fleet_server.health.recorder import HealthRecorder
from fleet_server.ingest import Ingest
from fleet_server.ingest.ratelimit import OutletRateLimiter
from fleet_server.ingest.stats import RateLimitedLog
from fleet_server.metrics import FleetMetrics
from fleet_server.models import Agent
from fleet_server.routing.targets import TargetsConfig, load_targets
from fleet_server.routing.worker import DeliveryWorker
from fleet_server.scrape_cache import ScrapeCache
from fleet_server.settings import Settings
from fleet_server.timeseries.regions import OutletRegions
from fleet_server.timeseries.sink import TelemetrySink
from fleet_server.transactions.materials import material_purge
from fleet_server.transactions.purge import purge_loop

logger = logging.getLogger(__name__)
_FIGURES_TTL_S = 30.0
_OUTLET_PASS_TIMEOUT_S = 120.0


class HealthRuntime:
    """The limiter, recorder, sink, alert engine and notifier of one process."""

    def __init__(
        self,
        settings: Settings,
        *,
        sessions: sessionmaker[Session],
        metrics: FleetMetrics,
        engine: Engine | None = None,
    ) -> None:
        self.settings = settings
        self.live = LiveHub()
        # Pages served by one process follow what another stored (API and ingest apart).
        self.live_share = (
            LiveShare(self.live, sessions, interval_s=settings.live_share_interval_s)
            if settings.live_share_interval_s > 0
            else None
        )
        self.limiter = OutletRateLimiter(
            rate_per_s=settings.ingest_outlet_rate_per_s,
            burst=settings.ingest_outlet_burst,
            presence_rate_per_s=settings.ingest_presence_rate_per_s,
            presence_burst=settings.ingest_presence_burst,
        )
        self.sink: TelemetrySink | None = None
        # An API-only process receives no telemetry: no sink to start or to drain.
        if settings.timeseries_url and settings.role != "api":
            self.sink = TelemetrySink(
                url=settings.timeseries_url,
                token=settings.timeseries_token,
                org=settings.timeseries_org,
                bucket=settings.timeseries_bucket,
                buffer_max=settings.timeseries_buffer_max,
                batch_max=settings.timeseries_batch_max,
                timeout_s=settings.timeseries_timeout_s,
                regions=OutletRegions(functools.partial(outlet_regions, sessions)),
            )
        self.recorder = HealthRecorder(
            history_interval_s=settings.health_history_interval_s,
            retention=timedelta(hours=settings.health_retention_hours),
            sink=self.sink,
            live=self.live,
            on_db_latency=metrics.observe_db,
        )
        robots: list[Destination] = [
            DingTalkRobot(robot.url, robot.secret.get_secret_value() if robot.secret else None)
            for robot in settings.alert_dingtalk
        ]
        robots += [WeComRobot(url) for url in settings.alert_wecom]
        self.notifier = WebhookNotifier(
            settings.alert_webhooks,
            robots=robots,
            retries=settings.alert_webhook_retries,
            backoff_s=settings.alert_webhook_backoff_s,
        )
        self.engine = AlertEngine(
            sessions=sessions,
            interval_s=settings.alert_eval_interval_s,
            timezone=settings.outlet_timezone,
            notifier=self.notifier,
            live=self.live,
            on_db_latency=metrics.observe_db,
            leader=_leader(settings, engine, sessions),
            outlet_pass=None if settings.role == "api" else _outlet_pass(settings, engine),
        )
        sources = metrics.sources
        sources.limiter = self.limiter
        sources.sink = self.sink
        sources.engine = self.engine
        sources.notifier = self.notifier
        sources.recorder_errors = lambda: self.recorder.write_errors
        share = self.live_share
        sources.live_share_errors = (lambda: share.errors) if share is not None else None
        sources.fleet_figures = self._fleet_figures
        self._metrics = metrics
        self._sessions = sessions
        # A scrape every 15 s while the database is down must not log a traceback each.
        self._log = RateLimitedLog(logger)
        self._figures: tuple[float, dict[str, dict[str, float]]] = (-1e9, {})
        sources.policy_figures = ScrapeCache[dict[tuple[str, str], FigureCounts]](
            sessions, self._read_policy_figures, {}, key="policy_figures",
            what="the policy figures", log=self._log, ttl_s=_FIGURES_TTL_S,
        )  # fmt: skip
        digits = settings.metrics_region_digits
        sources.region_presence = ScrapeCache[dict[tuple[str, str], int]](
            sessions, lambda session: presence_by_region(session, region_digits=digits), {},
            key="region_presence", what="outlets by region", log=self._log,
            ttl_s=_FIGURES_TTL_S,
        )  # fmt: skip

    def _read_policy_figures(self, session: Session) -> dict[tuple[str, str], FigureCounts]:
        """The policy figures' 30-day counts per (region, kind)."""
        until = datetime.now(UTC)
        return figures_by_region_and_kind(
            session, since=until - timedelta(days=30), until=until, now=until,
            region_digits=self.settings.metrics_region_digits,
        )  # fmt: skip

    def _fleet_figures(self) -> dict[str, dict[str, float]]:
        """Outlets by state and 30-day 好差评 figures, recomputed at most every 30 s."""
        now = time.monotonic()
        if now - self._figures[0] < _FIGURES_TTL_S:
            return self._figures[1]
        figures: dict[str, dict[str, float]] = {}
        try:
            with self._sessions() as session:
                rows = session.execute(select(Agent.state, func.count()).group_by(Agent.state))
                figures["outlets"] = {state: float(n) for state, n in rows}
                until = datetime.now(UTC)
                stats = evaluation_stats(
                    session, outlet_id=None, window=None, since=until - timedelta(days=30),
                    until=until, now=until,
                    active_rate_target=self.settings.evaluation_rules.active_rate_target,
                )  # fmt: skip
                figures["evaluations"] = {
                    "active_rate": stats.active_evaluation_rate or 0.0,
                    "active_rate_target": stats.active_rate_target,
                    "satisfaction_rate": stats.satisfaction_rate or 0.0,
                    "bad_reviews": float(stats.bad_reviews),
                    "overdue_rectifications": float(stats.overdue_rectifications),
                    "count": float(stats.evaluations),
                }
        except SQLAlchemyError as exc:
            self._log.exception(
                "fleet_figures", "could not read fleet figures for /metrics", exc=exc
            )
            return self._figures[1]
        self._figures = (now, figures)
        return figures

    def start(self, *, ingest: Ingest) -> None:
        """Start the background parts; the ingest was built with our limiter/recorder.

        An API-only process has no sink and never evaluates alerts: only the notifier
        runs there (docs/deploy.md, "Roles").
        """
        self._metrics.sources.ingest = ingest
        if self.live_share is not None:
            self.live_share.start()
        if self.settings.role == "api":
            self.notifier.start()
            return
        if self.sink is not None:
            self.sink.start()
            logger.info("telemetry goes to the time-series store as well")
        self.notifier.start()
        self.engine.start()

    def stop_engine(self) -> None:
        """Stop the alert engine and the notifier (before the ingest stops)."""
        self.engine.stop()
        self.notifier.stop()

    def stop_sink(self) -> None:
        """Stop the time-series sink (after the ingest drained), then the live share."""
        if self.sink is not None:
            self.sink.stop()
        if self.live_share is not None:
            self.live_share.stop()


def _leader(
    settings: Settings, engine: Engine | None, sessions: sessionmaker[Session]
) -> Leadership | None:
    """One alert-engine leader per database among the server processes
    (alerts/leader.py); an API-only process never competes for it."""
    if settings.role == "api":
        return NeverLeader(sessions)
    if engine is None:
        return None
    return leadership_for(engine, sessions, interval_s=settings.alert_eval_interval_s)


def _outlet_pass(settings: Settings, engine: Engine | None) -> OutletPassProcess | None:
    """The alert pass's child process, where the settings ask for it and it can work:
    an in-memory SQLite database exists only in this process."""
    if not settings.alert_eval_process or engine is None:
        return None
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return None
    return OutletPassProcess(
        url.render_as_string(hide_password=False),
        timezone=settings.outlet_timezone,
        # Generous (a pass at 50,000 outlets takes seconds) yet short enough that a
        # hung child does not stop alerting for long.
        timeout_s=_OUTLET_PASS_TIMEOUT_S,
    )


class ServerRuntime:
    """Every long-running part of one server process: health, ingest, delivery, purge.

    ``engine``: a database engine to share (the caller disposes of it); without one the
    runtime makes its own from ``settings`` and disposes of it at ``stop``. ``targets``:
    the targets file already loaded (``fleet-server run`` validates it before anything
    starts); without it the file is read at ``start``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: FleetMetrics,
        engine: Engine | None = None,
        targets: TargetsConfig | None = None,
    ) -> None:
        self.settings = settings
        self._metrics = metrics
        self._given_engine = engine
        self._given_targets = targets
        self._engine: Engine | None = None
        self.health: HealthRuntime | None = None
        self.ingest: Ingest | None = None
        self.delivery: DeliveryWorker | None = None
        self.reconciler: Reconciler | None = None
        self.campaigns: CampaignEngine | None = None
        self.state: AppState | None = None
        # Each outlet's 好差评 rules; whoever writes outlet_configs in this process
        # calls its invalidate() so the change applies at the next evaluation.
        self.evaluation_rules: OutletEvaluationRules | None = None
        self._purge: asyncio.Task[None] | None = None

    @property
    def database(self) -> Engine | None:
        """The engine every part uses, once started."""
        return self._engine

    async def start(self) -> AppState:
        """Build and start every part; the state the API's routes read.

        ``settings.role`` decides which parts run (docs/deploy.md, "Roles"): ``api``
        keeps a publish-only broker link and the config reconciler (an operator's change
        is signed and published at once); the uplink, delivery, alert engine, campaigns
        and purge run where the ingest runs (``all`` and ``ingest``).
        """
        settings = self.settings
        uplink = settings.role != "api"
        targets = self._given_targets
        if targets is None:
            targets = (
                load_targets(settings.upstream_targets_file)
                if settings.upstream_targets_file is not None
                else TargetsConfig()
            )
        db = self._given_engine or make_engine(settings.database_url)
        self._engine = db
        sessions = make_sessionmaker(db)
        health = HealthRuntime(settings, sessions=sessions, metrics=self._metrics, engine=db)
        self.health = health
        woken: list[DeliveryWorker] = []
        evaluation_rules = OutletEvaluationRules(
            settings.evaluation_rules,
            sessions=sessions,
            refresh_s=settings.evaluation_rules_refresh_s,
        )
        await asyncio.to_thread(evaluation_rules.load)
        self.evaluation_rules = evaluation_rules
        self._metrics.sources.evaluation_rules_errors = evaluation_rules.errors

        def wake_delivery() -> None:
            for worker in woken:
                worker.wake()

        # Desired configs: signed by the reconciler, reported back through the ingest.
        config_stats = ConfigStats()
        self._metrics.sources.config = config_stats
        desk = ReportDesk(
            stats=config_stats, republish_interval_s=settings.config_republish_interval_s
        )
        campaign_stats = CampaignStats()
        self._metrics.sources.campaigns = campaign_stats
        engines: list[CampaignEngine] = []

        def wake_campaigns() -> None:  # a report changed an outlet: judge it now
            for engine in engines:
                engine.wake()

        updates = UpdateReports(stats=campaign_stats, on_change=wake_campaigns)
        ingest = Ingest(
            settings,
            sessions=sessions,
            on_stored=wake_delivery,
            observer=health.recorder,
            limiter=health.limiter,
            rules_for=evaluation_rules,
            reports=desk,
            updates=updates,
            uplink=uplink,
        )
        self.ingest = ingest
        # Update campaigns: driven by the alert engine's leader only (one per database).
        leader = health.engine.leader
        campaigns = CampaignEngine(
            sessions=sessions,
            publisher=ingest.publisher,
            stats=campaign_stats,
            leading=lambda: leader.leading,
            default_zone=settings.outlet_timezone,
            interval_s=settings.campaign_tick_s,
        )
        self.campaigns = campaigns
        engines.append(campaigns)
        keys = load_config_keys(settings)
        reconciler = Reconciler(
            sessions=sessions,
            keys=keys,
            publisher=ingest.publisher,
            stats=config_stats,
            interval_s=settings.config_reconcile_interval_s,
            default_zone=settings.outlet_timezone,
            on_signed=evaluation_rules.invalidate,
        )
        self.reconciler = reconciler
        desk.attach(publisher=ingest.publisher, publish_lock=reconciler.publish_lock)
        if targets.targets and uplink:
            self.delivery = DeliveryWorker(
                sessions=sessions,
                targets=targets,
                publish_results=lambda results: ingest.publish_results(results, timeout=5.0),
                poll_interval_s=settings.delivery_poll_interval_s,
                concurrency=settings.delivery_concurrency,
                lease_s=settings.delivery_lease_s,
            )
            woken.append(self.delivery)
            health.engine.watch_breakers(self.delivery.breaker_states)
        await asyncio.to_thread(ingest.start)
        if self.delivery is not None:
            self.delivery.start()
        health.start(ingest=ingest)
        reconciler.start()  # after the ingest: its first pass publishes at once
        if uplink:
            campaigns.start()
            self._purge = self._start_purge(sessions)
        self.state = AppState(
            engine=db,
            sessions=sessions,
            ingest=ingest,
            targets=targets,
            rules=settings.evaluation_rules,
            rules_for=evaluation_rules,
            delivery=self.delivery,
            config_changed=reconciler.wake,
            campaigns_changed=campaigns.wake,
            config_keys=keys.public_b64(),
            check_alert_override=check_override,
            ready_needs_broker=uplink,
        )
        return self.state

    def _start_purge(self, sessions: sessionmaker[Session]) -> asyncio.Task[None]:
        """The purge of delivered bodies and old materials, in the background."""
        settings = self.settings
        return asyncio.create_task(
            purge_loop(
                sessions,
                retention=timedelta(days=settings.pii_retention_days),
                interval_s=settings.pii_purge_interval_s,
                also=[
                    material_purge(
                        retention=timedelta(days=settings.material_retention_days),
                        orphan_retention=timedelta(days=settings.material_orphan_days),
                    )
                ],
            ),
            name="pii-purge",
        )

    async def stop(self) -> None:
        """Stop in reverse: purge, delivery, alerts, the ingest (drained), the sink."""
        if self._purge is not None:
            self._purge.cancel()
        if self.delivery is not None:
            await asyncio.to_thread(self.delivery.stop)
        if self.reconciler is not None:
            await asyncio.to_thread(self.reconciler.stop)
        if self.campaigns is not None:
            await asyncio.to_thread(self.campaigns.stop)
        if self.health is not None:
            await asyncio.to_thread(self.health.stop_engine)
        if self.ingest is not None:
            await asyncio.to_thread(self.ingest.stop, timeout=self.settings.drain_timeout_s)
        if self.health is not None:
            await asyncio.to_thread(self.health.stop_sink)
        if self._engine is not None and self._given_engine is None:
            self._engine.dispose()
