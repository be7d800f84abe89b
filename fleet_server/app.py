"""The FastAPI application: ``create_app(settings)``; its lifespan owns ingest and delivery.

Startup reads the upstream targets file (a bad one stops the start), connects the
database, starts the delivery worker (when targets are configured) and the MQTT ingest
(which connects in the background and keeps reconnecting). Shutdown stops the delivery
worker first (running deliveries record their outcome), then publishes the offline
server state, stops paho, drains the ingest queue within ``drain_timeout_s`` and
closes the engine.
Migrations are not run here: ``fleet-server run`` upgrades before it builds the app.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import Depends, FastAPI
from sqlalchemy import Engine

from fleet_server.alerts import api as alerts_api
from fleet_server.api import (
    audit,
    catalogue,
    dead_letters,
    enrollment,
    evaluations,
    health,
    ingest,
    outlets,
    rectifications,
    transactions,
    users,
)
from fleet_server.api.auth import (
    ADMIN,
    OPEN,
    OPERATOR,
    PROBE,
    READ_VIEWER_WRITE_OPERATOR,
    VIEWER,
    SecurityContext,
    api_guard,
    mark_open,
)
from fleet_server.api.deps import AppState
from fleet_server.api.errors import ERROR_RESPONSES, RATE_LIMITED
from fleet_server.api.limits import RequestLimits
from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.health import api as health_api
from fleet_server.ingest import Ingest
from fleet_server.metrics import FleetMetrics
from fleet_server.metrics import router as metrics_router
from fleet_server.piivault import open_vault, use_vault
from fleet_server.routing.targets import TargetsConfig, load_targets
from fleet_server.routing.worker import DeliveryWorker
from fleet_server.runtime import HealthRuntime
from fleet_server.settings import Settings
from fleet_server.transactions.materials import material_purge
from fleet_server.transactions.purge import purge_loop
from fleet_server.web import login as web_login
from fleet_server.web import ui as web_ui

API_PREFIX = "/api/v1"
logger = logging.getLogger(__name__)


def create_app(
    settings: Settings, *, engine: Engine | None = None, targets: TargetsConfig | None = None
) -> FastAPI:
    """Build the app; pass ``engine`` to share one (the caller then disposes of it).

    ``targets``: the targets file already loaded (``fleet-server run`` validates it before
    anything starts); without it the file is read here, at start.
    """
    given_targets = targets

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        targets = given_targets
        if targets is None:
            targets = (
                load_targets(settings.upstream_targets_file)
                if settings.upstream_targets_file is not None
                else TargetsConfig()
            )
        own_engine = engine is None
        db = engine if engine is not None else make_engine(settings.database_url)
        sessions = make_sessionmaker(db)
        woken: list[DeliveryWorker] = []

        def wake_delivery() -> None:
            for worker in woken:
                worker.wake()

        health_rt = HealthRuntime(settings, sessions=sessions, metrics=app.state.metrics, engine=db)
        ingest_ = Ingest(
            settings,
            sessions=sessions,
            on_stored=wake_delivery,
            observer=health_rt.recorder,
            limiter=health_rt.limiter,
        )
        delivery = None
        purge: asyncio.Task[None] | None = None
        if targets.targets:
            delivery = DeliveryWorker(
                sessions=sessions,
                targets=targets,
                publish_result=lambda result: ingest_.publish_result(result, timeout=5.0),
                poll_interval_s=settings.delivery_poll_interval_s,
                concurrency=settings.delivery_concurrency,
                lease_s=settings.delivery_lease_s,
            )
            woken.append(delivery)
        try:
            await asyncio.to_thread(ingest_.start)
            if delivery is not None:
                delivery.start()
            app.state.health = health_rt
            health_rt.start(ingest=ingest_)
            purge = asyncio.create_task(
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
            app.state.fleet = AppState(
                engine=db,
                sessions=sessions,
                ingest=ingest_,
                targets=targets,
                rules=settings.evaluation_rules,
                delivery=delivery,
            )
            yield
        finally:
            if purge is not None:
                purge.cancel()
            if delivery is not None:
                await asyncio.to_thread(delivery.stop)
            await asyncio.to_thread(health_rt.stop_engine)
            await asyncio.to_thread(ingest_.stop, timeout=settings.drain_timeout_s)
            await asyncio.to_thread(health_rt.stop_sink)
            if own_engine:
                db.dispose()

    app = FastAPI(
        title="govedge fleet server",
        summary="Registry, presence and ingest of a fleet of government-service outlets.",
        version="0.1.0",
        lifespan=lifespan,
        # Backstop: any /api/v1 route not marked open needs a valid token (docs/security.md).
        dependencies=[Depends(api_guard)],
    )
    # Transaction bodies are sealed at rest with these keys (piivault.keysource).
    use_vault(open_vault(settings.pii_key_dir))
    app.state.security = SecurityContext(settings)
    app.state.metrics = FleetMetrics()
    if settings.api_auth == "off":
        logger.warning("API authentication is OFF (GOVEDGE_API_AUTH=off): development only")
    # Roles (fleet_server.security.roles) per router; write endpoints need more.
    rw = READ_VIEWER_WRITE_OPERATOR
    # Every /api/v1 router documents the error answers its routes give (api/errors.py).
    api = functools.partial(app.include_router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
    app.include_router(health.router, dependencies=[PROBE])
    api(outlets.router, dependencies=[VIEWER])
    api(ingest.router, dependencies=[VIEWER])
    # One router per resource, so role checks can be attached per router.
    api(catalogue.router, dependencies=[rw])
    api(transactions.router, dependencies=[rw])
    api(dead_letters.router, dependencies=[rw])
    api(evaluations.router, dependencies=[rw])
    api(rectifications.router, dependencies=[rw])
    api(enrollment.admin_router)
    api(enrollment.public_router, responses=ERROR_RESPONSES | RATE_LIMITED)
    mark_open(f"{API_PREFIX}/enroll")
    mark_open(f"{API_PREFIX}/enroll/renew")
    api(users.router)
    api(users.me_router, dependencies=[VIEWER])
    api(audit.router, dependencies=[ADMIN])
    # Fleet health (docs/fleet-health.md): reads for viewers, changes for operators.
    app.include_router(metrics_router, dependencies=[PROBE])
    api(health_api.read_router, dependencies=[VIEWER])
    api(health_api.write_router, dependencies=[OPERATOR])
    api(alerts_api.read_router, dependencies=[VIEWER])
    api(alerts_api.write_router, dependencies=[OPERATOR])
    app.include_router(web_ui.router, dependencies=[VIEWER])
    app.include_router(web_login.router, dependencies=[OPEN])  # how a browser gets a session
    # Body sizes and the rate of unauthenticated calls, checked before a body is read.
    app.add_middleware(
        RequestLimits,
        default_max_bytes=settings.http_body_max_bytes,
        rate_per_min=settings.open_rate_per_min,
        burst=settings.open_burst,
        counts=app.state.metrics.http_refused,
    )
    return app
