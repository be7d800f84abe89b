"""The FastAPI application: ``create_app(settings)``; its lifespan owns the ingest.

Startup connects the database and starts the MQTT ingest (which connects in the
background and keeps reconnecting). Shutdown publishes the offline server state,
stops paho, drains the ingest queue within ``drain_timeout_s`` and closes the engine.
Migrations are not run here: ``fleet-server run`` upgrades before it builds the app.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import Engine

from fleet_server.api import health, ingest, outlets
from fleet_server.api.deps import AppState
from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.ingest import Ingest
from fleet_server.settings import Settings

API_PREFIX = "/api/v1"


def create_app(settings: Settings, *, engine: Engine | None = None) -> FastAPI:
    """Build the app; pass ``engine`` to share one (the caller then disposes of it)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_engine = engine is None
        db = engine if engine is not None else make_engine(settings.database_url)
        sessions = make_sessionmaker(db)
        ingest_ = Ingest(settings, sessions=sessions)
        try:
            await asyncio.to_thread(ingest_.start)
            app.state.fleet = AppState(engine=db, sessions=sessions, ingest=ingest_)
            yield
        finally:
            await asyncio.to_thread(ingest_.stop, timeout=settings.drain_timeout_s)
            if own_engine:
                db.dispose()

    app = FastAPI(
        title="govedge fleet server",
        summary="Registry, presence and ingest of a fleet of government-service outlets.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.include_router(health.router)
    app.include_router(outlets.router, prefix=API_PREFIX)
    app.include_router(ingest.router, prefix=API_PREFIX)
    return app
