"""``/healthz`` (the process answers) and ``/readyz`` (database and broker usable)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from fleet_server.api.deps import AppStateDep
from fleet_server.db import database_reachable

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Always ``{"status": "ok"}`` while the process serves requests."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "database or broker not usable"}})
async def readyz(state: AppStateDep) -> JSONResponse:
    """200 when the database answers and the ingest is subscribed (an API-only process:
    the database answers; its broker link is reported, not required); 503 otherwise."""
    database = await run_in_threadpool(database_reachable, state.engine)
    broker = state.ingest.stats.broker_connected
    ready = database and (broker or not state.ready_needs_broker)
    return JSONResponse(
        {"ready": ready, "database": database, "broker": broker},
        status_code=200 if ready else 503,
    )
