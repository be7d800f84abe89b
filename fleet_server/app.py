"""The FastAPI application: ``create_app(settings)``; routes, guards and the lifespan.

The lifespan starts one ``ServerRuntime`` (fleet_server/runtime.py: health parts, MQTT
ingest, delivery upstream, purge) and stops it in reverse; a bad targets file stops the
start. Migrations are not run here: ``fleet-server run`` upgrades before it builds the app.
An ingest-only process (``settings.role == "ingest"``) serves its probes and ``/metrics``
and no operator route: its app is built without them (docs/deploy.md, "Roles").
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import metadata

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from fleet_server import scope_owners
from fleet_server.alerts import api as alerts_api
from fleet_server.api import (
    audit,
    catalogue,
    dead_letters,
    enrollment,
    enrollment_lists,
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
    READ_VIEWER_WRITE_CONFIG,
    READ_VIEWER_WRITE_OPERATOR,
    TECHNICIAN,
    VIEWER,
    SecurityContext,
    api_guard,
    mark_open,
)
from fleet_server.api.errors import ERROR_RESPONSES, RATE_LIMITED, validation_failed
from fleet_server.api.limits import BODY_LIMITS, RequestLimits
from fleet_server.api.scope import WHOLE_FLEET_ONLY, metrics_access, path_guard
from fleet_server.campaigns import api as campaigns_api
from fleet_server.config import api as config_api
from fleet_server.db_outage import DatabaseOutage
from fleet_server.health import api as health_api
from fleet_server.health import figures_api, regions_api, registry_api
from fleet_server.metrics import FleetMetrics
from fleet_server.metrics_endpoint import router as metrics_router
from fleet_server.piivault import open_vault, use_vault
from fleet_server.playbooks import api as playbooks_api
from fleet_server.playbooks import archives_api
from fleet_server.playbooks.revoke import revoker
from fleet_server.playbooks.worker import RunManager
from fleet_server.releases import api as releases_api
from fleet_server.routing.targets import TargetsConfig
from fleet_server.runtime import ServerRuntime
from fleet_server.security import passwords
from fleet_server.settings import Settings
from fleet_server.web import admin_pages as web_admin_pages
from fleet_server.web import login as web_login
from fleet_server.web import ops_pages as web_ops_pages
from fleet_server.web import playbook_pages as web_playbook_pages
from fleet_server.web import ui as web_ui

API_PREFIX = "/api/v1"
logger = logging.getLogger(__name__)


def installed_version() -> str:
    """The installed govedge version: /openapi.json says which server wrote it."""
    try:
        return metadata.version("govedge")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"


def create_app(
    settings: Settings, *, engine: Engine | None = None, targets: TargetsConfig | None = None
) -> FastAPI:
    """Build the app; pass ``engine`` to share one (the caller then disposes of it).

    ``targets``: the targets file already loaded (``fleet-server run`` validates it before
    anything starts); without it the file is read here, at start.
    """
    operator_routes = settings.role != "ingest"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = ServerRuntime(settings, metrics=app.state.metrics, engine=engine, targets=targets)
        try:
            state = await runtime.start()
            if runtime.database is not None:
                app.state.db_outage.watch(runtime.database)
            app.state.health = runtime.health
            app.state.fleet = state
            if not operator_routes:
                yield
                return
            warming = asyncio.create_task(asyncio.to_thread(passwords.warm_up))
            # Playbook runs survive nothing: those of an earlier process are interrupted.
            app.state.playbook_runs = RunManager(
                state.sessions,
                runs_dir=settings.playbook_runs_dir,
                ssh_key=settings.playbook_ssh_key,
                max_concurrent=settings.playbook_max_concurrent_runs,
                revoke=revoker(state.sessions, app.state.security, state.ingest),
            )
            app.state.playbook_runs.mark_interrupted()
            yield
            await warming
        finally:
            if getattr(app.state, "playbook_runs", None) is not None:
                app.state.playbook_runs.stop()
            await runtime.stop()

    app = FastAPI(
        title="govedge fleet server",
        summary="Registry, presence and ingest of a fleet of government-service outlets.",
        version=installed_version(),
        lifespan=lifespan,
        # Backstop: any /api/v1 route not marked open needs a valid token (docs/security.md).
        # Then the scope guard: a path naming an outlet (or a row of outlets) outside a
        # scoped user's regions answers 404 (fleet_server.api.scope).
        dependencies=[Depends(api_guard), Depends(path_guard)],
    )
    # Transaction bodies are sealed at rest with these keys (piivault.keysource).
    use_vault(open_vault(settings.pii_key_dir))
    app.state.security = SecurityContext(settings)
    scope_owners.register()
    app.state.metrics = FleetMetrics()
    # A lost database answers 503 (API: problem+json; pages: a page saying so).
    app.state.db_outage = DatabaseOutage(app.state.metrics.http_refused)
    app.add_exception_handler(OperationalError, app.state.db_outage.handle)
    # 422s name the fields, never the values (fleet_server.api.errors).
    app.add_exception_handler(RequestValidationError, validation_failed)
    if settings.api_auth == "off":
        logger.warning("API authentication is OFF (GOVEDGE_API_AUTH=off): development only")
    app.include_router(health.router, dependencies=[PROBE])
    if operator_routes:
        _include_operator_routes(app)
    else:
        _include_metrics(app)
    # Body sizes and the rate of unauthenticated calls, checked before a body is read.
    app.add_middleware(
        RequestLimits,
        default_max_bytes=settings.http_body_max_bytes,
        limits={**BODY_LIMITS, f"{API_PREFIX}/releases": settings.release_max_bytes},
        rate_per_min=settings.open_rate_per_min,
        burst=settings.open_burst,
        counts=app.state.metrics.http_refused,
    )
    return app


def _include_operator_routes(app: FastAPI) -> None:
    """The operator API and the pages (every role but ``ingest``)."""
    # Roles (fleet_server.security.roles) per router; write endpoints need more.
    rw = READ_VIEWER_WRITE_OPERATOR
    # Every /api/v1 router documents the error answers its routes give (api/errors.py).
    api = functools.partial(app.include_router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
    # The registry file (docs/outlet-registry.md) before /outlets/{outlet_id} claims
    # "import" and "export" as outlet ids; scoped users import their own regions only.
    api(registry_api.read_router, dependencies=[VIEWER])
    api(registry_api.write_router, dependencies=[OPERATOR])
    api(outlets.router, dependencies=[VIEWER])
    api(ingest.router, dependencies=[VIEWER])
    # One router per resource, so role checks can be attached per router.
    api(catalogue.router, dependencies=[rw])
    api(transactions.router, dependencies=[rw])
    api(dead_letters.router, dependencies=[rw])
    api(evaluations.router, dependencies=[rw])
    api(rectifications.router, dependencies=[rw])
    api(enrollment.admin_router)
    api(enrollment_lists.router, dependencies=[ADMIN])
    api(enrollment.public_router, responses=ERROR_RESPONSES | RATE_LIMITED)
    mark_open(f"{API_PREFIX}/enroll")
    mark_open(f"{API_PREFIX}/enroll/renew")
    api(users.router)
    api(users.me_router, dependencies=[VIEWER])
    api(audit.router, dependencies=[ADMIN])
    # Fleet health (docs/fleet-health.md): reads for viewers, changes for operators.
    _include_metrics(app)
    api(health_api.read_router, dependencies=[VIEWER])
    api(figures_api.router, dependencies=[VIEWER])
    # Profiles and regions decide every scope: whole-fleet users only.
    api(health_api.write_router, dependencies=[OPERATOR, WHOLE_FLEET_ONLY])
    api(regions_api.router, dependencies=[OPERATOR, WHOLE_FLEET_ONLY])
    api(alerts_api.read_router, dependencies=[VIEWER])
    api(alerts_api.write_router, dependencies=[OPERATOR])
    # Desired config (docs/config.md): viewers read, operators write.
    api(config_api.router, dependencies=[READ_VIEWER_WRITE_CONFIG])
    # Agent releases (docs/updates.md): operators upload and mark bad, viewers read;
    # downloads also take an outlet's certificate proof, so the token backstop steps aside.
    api(releases_api.write_router, dependencies=[OPERATOR, WHOLE_FLEET_ONLY])
    api(releases_api.read_router, dependencies=[VIEWER])
    api(releases_api.download_router)
    mark_open(f"{API_PREFIX}/releases/{{version}}/manifest")
    mark_open(f"{API_PREFIX}/releases/{{version}}/artifact")
    # Update campaigns (docs/updates.md): operators create and steer, viewers read.
    api(campaigns_api.write_router, dependencies=[OPERATOR])
    api(campaigns_api.read_router, dependencies=[VIEWER])
    # Playbook runs (docs/playbook-runs.md): technicians run and cancel, viewers read.
    api(playbooks_api.read_router, dependencies=[VIEWER])
    api(playbooks_api.write_router, dependencies=[TECHNICIAN])
    api(archives_api.read_router, dependencies=[VIEWER])
    api(archives_api.download_router, dependencies=[TECHNICIAN])
    api(archives_api.admin_router, dependencies=[ADMIN])
    app.include_router(web_ui.router, dependencies=[VIEWER])
    app.include_router(web_playbook_pages.router, dependencies=[VIEWER])
    app.include_router(web_ops_pages.router, dependencies=[VIEWER])
    app.include_router(web_admin_pages.router, dependencies=[VIEWER])
    app.include_router(web_admin_pages.admin_router, dependencies=[ADMIN])
    # How a browser gets a session: the entry, the login form and the files it needs.
    app.include_router(web_login.router, dependencies=[OPEN])
    app.include_router(web_login.root_router, dependencies=[OPEN])
    app.include_router(web_ui.static_router, dependencies=[OPEN])
    # Pages opened without a session go to the login form (API routes keep JSON 401).
    app.add_exception_handler(StarletteHTTPException, web_login.redirect_pages_to_login)


def _include_metrics(app: FastAPI) -> None:
    """Fleet totals, or a scoped user's own series (fleet_server.metrics_endpoint)."""
    app.include_router(metrics_router, dependencies=[Depends(metrics_access)])
