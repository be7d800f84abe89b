"""The technician's line into the running agent: a small HTTP API on a Unix socket.

The device commands (``edge-agent device list|retire|self-test``) need the running agent:
it holds the devices open, so nothing else may print on its printer or read its camera.
The socket is ``DATA_DIR/technician.sock``, 0600 inside the 0700 data dir, so only
the service user and root reach it; no token is needed and none can leak. It is not the
clerks' local API: clerk apps never retire devices.

Routes: ``GET /status`` (the agent's own word: version, outlet, connected, uptime),
``GET /outbox`` (what the outbox holds now, counts only: what ``edge-agent outbox
status`` reads from a running agent), ``GET /devices`` (inventory plus the retired ids),
``POST /devices/retire`` ``{"key": SERIAL_OR_ID, "force": false}``,
``POST /devices/register`` (a network device:
``{"profile", "address", "device_id", "serial"}``), ``POST /devices/{id}/self-test``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Final

import uvicorn
from fastapi import Body, FastAPI
from fastapi.responses import JSONResponse

from edge_agent.devices import DeviceError, DeviceUnavailable
from edge_agent.discovery import DeviceManager, RetiredFileError, UnknownRetirement
from edge_agent.discovery.registered import RegistrationRefused
from edge_agent.discovery.retired import check_key
from edge_agent.embedded_server import EmbeddedServer
from edge_agent.settings_models import NetworkDeviceSetting

__all__ = ["SOCKET_FILE", "create_technician_app", "serve_technician_socket"]

log = logging.getLogger(__name__)

SOCKET_FILE: Final = "technician.sock"
SELF_TEST_TIMEOUT_S: Final = 30.0


def _problem(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


AgentStatus = Callable[[], dict[str, Any]]
# The outbox's counts now: entries waiting, dead letters, the oldest entry's age (s).
OutboxCounts = Callable[[], Awaitable[tuple[int, int, float | None]]]


def create_technician_app(
    devices: DeviceManager,
    status: AgentStatus | None = None,
    outbox: OutboxCounts | None = None,
) -> FastAPI:
    """The socket's routes over the running agent's device manager; ``status`` gives the
    agent's own state (no personal data: version, outlet id, connection, uptime),
    ``outbox`` its outbox's counts (nothing of the entries themselves)."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/status")
    async def agent_status() -> dict[str, Any]:
        return {"pid": os.getpid(), **(status() if status is not None else {})}

    @app.get("/outbox", response_model=None)
    async def outbox_counts() -> dict[str, Any] | JSONResponse:
        if outbox is None:
            return _problem(404, "no_outbox", "this agent has no outbox open")
        waiting, dead_letters, oldest_age_s = await outbox()
        return {"waiting": waiting, "dead_letters": dead_letters, "oldest_age_s": oldest_age_s}

    @app.get("/devices")
    async def list_devices() -> dict[str, Any]:
        health = await devices.health()
        return {
            "devices": [
                {
                    "device_id": info.device_id,
                    "kind": info.kind,
                    "model": info.model,
                    "state": info.state,
                    "health": health.get(info.device_id, dict(info.health)),
                }
                for info in devices.inventory()
            ],
            "retired": devices.retired_device_ids(),
        }

    @app.post("/devices/retire", response_model=None)
    async def retire(
        key: Annotated[str, Body(embed=True, max_length=128)],
        force: Annotated[bool, Body(embed=True)] = False,
    ) -> dict[str, Any] | JSONResponse:
        try:
            check_key(key)
            ids, changed = await devices.retire(key, force=force)
        except UnknownRetirement as exc:
            return _problem(404, "unknown_device", str(exc))
        except RetiredFileError as exc:
            return _problem(409, "retired_list_unusable", str(exc))
        return {"retired": ids, "changed": changed}

    @app.post("/devices/register", response_model=None)
    async def register(device: NetworkDeviceSetting) -> dict[str, Any] | JSONResponse:
        try:
            changed = await devices.register(device.to_config())
        except RegistrationRefused as exc:
            return _problem(409, "registration_refused", str(exc))
        except RetiredFileError as exc:
            return _problem(409, "registered_list_unusable", str(exc))
        return {"device_id": device.device_id, "changed": changed}

    @app.post("/devices/{device_id}/self-test", response_model=None)
    async def self_test(device_id: str) -> dict[str, Any] | JSONResponse:
        try:
            driver = devices.driver(device_id)
        except DeviceUnavailable as exc:
            return _problem(409, "not_ready", str(exc))
        try:
            async with asyncio.timeout(SELF_TEST_TIMEOUT_S):
                result = await driver.self_test()
        except DeviceError as exc:
            return {"device_id": device_id, "kind": driver.kind, "ok": False, "error": str(exc)}
        except TimeoutError:
            return {"device_id": device_id, "kind": driver.kind, "ok": False, "error": "timeout"}
        return {"device_id": device_id, "kind": driver.kind, "ok": True, "result": result}

    return app


async def serve_technician_socket(
    devices: DeviceManager,
    data_dir: Path,
    status: AgentStatus | None = None,
    outbox: OutboxCounts | None = None,
) -> None:
    """Serve on ``data_dir/technician.sock`` until cancelled; the socket is removed after."""
    path = data_dir / SOCKET_FILE
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by a killed agent; a live one would hold the outbox lock too
    config = uvicorn.Config(
        create_technician_app(devices, status, outbox),
        uds=str(path),
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="off",
    )
    server = EmbeddedServer(config)
    task = asyncio.create_task(server.serve(), name="technician-socket")
    try:
        while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn has no event
            await asyncio.sleep(0.05)
        if task.done():
            with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot bind
                await task
            raise OSError(f"cannot listen on {path}")
        os.chmod(path, 0o600)  # the data dir is 0700 already; the socket says so too
        log.info("technician socket listening on %s", path)
        # Shielded: a cancel becomes uvicorn's graceful stop, which closes the socket.
        await asyncio.shield(task)
    finally:
        if not task.done():
            server.should_exit = True
            await asyncio.wait([task], timeout=5.0)
            if not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=1.0)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
