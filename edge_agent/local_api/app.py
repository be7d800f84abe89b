"""``create_local_app``: the clerks' local API as a Starlette app over one ``AgentRuntime``.

The routes are declared in FastAPI's terms and served by ``routing`` without FastAPI;
``/openapi.json`` is written by FastAPI in a child process (``openapi_route``).

The app holds no device or outbox of its own: every route goes through the runtime the
daemon built (devices, outbox, queue, events). Its lifespan owns the API's state
database (``DATA_DIR/local_api.sqlite3``), its background tasks (the transaction
status table following ``runtime.transactions``, the caller keypads' window operations,
``queueing.keypad_loop.run_keypads``, the announcement player when it is on) and the
directory of rendered announcements.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware

from edge_agent.counters import AgentCounters
from edge_agent.local_api import client_files, console_page, hall_pages
from edge_agent.local_api.apps import AppRegistry
from edge_agent.local_api.context import LocalApiContext, LocalApiOptions
from edge_agent.local_api.default_ratings import run_default_ratings
from edge_agent.local_api.errors import install_error_handlers
from edge_agent.local_api.keypad_services import LocalKeypadServices
from edge_agent.local_api.openapi_route import OpenApiDocument
from edge_agent.local_api.routes import v1_router
from edge_agent.local_api.routing import APIRouter, starlette_routes
from edge_agent.local_api.security import LocalGuard
from edge_agent.queueing.keypad_loop import run_keypads
from edge_agent.runtime import AgentRuntime

__all__ = ["create_local_app"]


def create_local_app(
    runtime: AgentRuntime,
    *,
    apps: AppRegistry,
    options: LocalApiOptions | None = None,
    announcements_dir: Path | None = None,
    state_dir: Path | None = None,
    counters: AgentCounters | None = None,
) -> Starlette:
    """Build the local API over ``runtime``; clerk apps and tokens come from ``apps``.

    ``announcements_dir`` holds the rendered WAVs (default: a private temporary
    directory removed at shutdown). ``state_dir`` holds ``local_api.sqlite3`` (default:
    the directory of ``apps.json``, i.e. the data dir). Refused requests and the
    announcement player count into ``counters`` (the agent's, reported in telemetry).
    """
    local = LocalApiContext(
        runtime,
        apps=apps,
        options=options or LocalApiOptions(),
        announcements_dir=announcements_dir,
        state_dir=state_dir or apps.path.parent,
        counters=counters,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with local.state:
            subscription = runtime.transactions.subscribe(maxsize=1024)
            tracker = asyncio.create_task(
                local.tracker.run(subscription), name="local-api:transaction-tracker"
            )
            key_events = runtime.events.subscribe(maxsize=1024)
            keypads = asyncio.create_task(
                run_keypads(LocalKeypadServices(local), key_events),
                name="local-api:caller-keypads",
            )
            defaults = asyncio.create_task(
                run_default_ratings(local), name="local-api:default-ratings"
            )
            tasks = [tracker, keypads, defaults]
            if local.player.enabled:
                tasks.append(asyncio.create_task(local.player.run(), name="local-api:voice"))
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.wait(tasks, timeout=5.0)
                subscription.close()
                key_events.close()
                local.announcements.close()

    every = APIRouter()
    for router in (v1_router, client_files.router, hall_pages.router, console_page.router):
        every.include_router(router)
    guard = Middleware(
        LocalGuard,
        registry=apps,
        max_body_bytes=local.options.max_body_bytes,
        refused=local.refused,
    )
    app = Starlette(
        routes=[OpenApiDocument().route(), *starlette_routes(every)],
        middleware=[guard],
        lifespan=lifespan,
    )
    app.state.local = local
    install_error_handlers(app)
    return app
