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
from typing import Any, Final, TypeVar

import uvicorn
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from edge_agent.counters import AgentCounters, LogLimiter
from edge_agent.devices import DeviceError, DeviceUnavailable
from edge_agent.discovery import DeviceManager, RetiredFileError, UnknownRetirement
from edge_agent.discovery.registered import RegistrationRefused
from edge_agent.discovery.retired import check_key
from edge_agent.embedded_server import EmbeddedServer
from edge_agent.settings_models import NetworkDeviceSetting
from govedge_wire.pii import field_path

__all__ = ["SOCKET_FILE", "create_technician_app", "serve_technician_socket"]

log = logging.getLogger(__name__)

SOCKET_FILE: Final = "technician.sock"
SELF_TEST_TIMEOUT_S: Final = 30.0


def _problem(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


class RetireRequest(BaseModel):
    """``POST /devices/retire``'s body."""

    model_config = ConfigDict(extra="forbid")
    key: str = Field(max_length=128)
    force: bool = False


Model = TypeVar("Model", bound=BaseModel)


class _Invalid(Exception):
    """A body that is not what the route takes: 422 with what is wrong."""


def _body(model: type[Model], raw: bytes) -> Model:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        where = [
            f"{'.'.join(field_path(e['loc'])) or 'body'}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise _Invalid("; ".join(where)) from None


AgentStatus = Callable[[], dict[str, Any]]
# The outbox's counts now: entries waiting, dead letters, the oldest entry's age (s).
OutboxCounts = Callable[[], Awaitable[tuple[int, int, float | None]]]


def create_technician_app(
    devices: DeviceManager,
    status: AgentStatus | None = None,
    outbox: OutboxCounts | None = None,
    counters: AgentCounters | None = None,
) -> Starlette:
    """The socket's routes over the running agent's device manager; ``status`` gives the
    agent's own state (no personal data: version, outlet id, connection, uptime),
    ``outbox`` its outbox's counts (nothing of the entries themselves). Plain Starlette:
    five routes, no document (the socket is not an API for others). A body refused with
    422 counts ``technician_refused_invalid_request`` in ``counters`` (telemetry)."""

    async def agent_status(request: Request) -> JSONResponse:
        return JSONResponse({"pid": os.getpid(), **(status() if status is not None else {})})

    async def outbox_counts(request: Request) -> JSONResponse:
        if outbox is None:
            return _problem(404, "no_outbox", "this agent has no outbox open")
        waiting, dead_letters, oldest_age_s = await outbox()
        return JSONResponse(
            {"waiting": waiting, "dead_letters": dead_letters, "oldest_age_s": oldest_age_s}
        )

    async def list_devices(request: Request) -> JSONResponse:
        health = await devices.health()
        return JSONResponse(
            {
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
        )

    async def retire(request: Request) -> JSONResponse:
        body = _body(RetireRequest, await request.body())
        try:
            check_key(body.key)
            ids, changed = await devices.retire(body.key, force=body.force)
        except UnknownRetirement as exc:
            return _problem(404, "unknown_device", str(exc))
        except RetiredFileError as exc:
            return _problem(409, "retired_list_unusable", str(exc))
        return JSONResponse({"retired": ids, "changed": changed})

    async def register(request: Request) -> JSONResponse:
        device = _body(NetworkDeviceSetting, await request.body())
        try:
            changed = await devices.register(device.to_config())
        except RegistrationRefused as exc:
            return _problem(409, "registration_refused", str(exc))
        except RetiredFileError as exc:
            return _problem(409, "registered_list_unusable", str(exc))
        return JSONResponse({"device_id": device.device_id, "changed": changed})

    async def self_test(request: Request) -> JSONResponse:
        device_id = str(request.path_params["device_id"])
        try:
            driver = devices.driver(device_id)
        except DeviceUnavailable as exc:
            return _problem(409, "not_ready", str(exc))
        try:
            async with asyncio.timeout(SELF_TEST_TIMEOUT_S):
                result = await driver.self_test()
        except DeviceError as exc:
            answer = {"device_id": device_id, "kind": driver.kind, "ok": False, "error": str(exc)}
            return JSONResponse(answer)
        except TimeoutError:
            answer = {"device_id": device_id, "kind": driver.kind, "ok": False, "error": "timeout"}
            return JSONResponse(answer)
        return JSONResponse(
            {"device_id": device_id, "kind": driver.kind, "ok": True, "result": result}
        )

    quiet = LogLimiter()  # a looping script must not fill the journal: once a minute a route

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        if counters is not None:
            counters.incr("technician_refused_invalid_request")
        # The route only: what was wrong goes back to the caller, never into the log
        # (a mistyped key could be anything the technician pasted).
        if quiet.allow(request.url.path):
            log.warning("technician socket: refused a body for %s (invalid)", request.url.path)
        return _problem(422, "invalid_request", str(exc))

    return Starlette(
        routes=[
            Route("/status", agent_status, methods=["GET"]),
            Route("/outbox", outbox_counts, methods=["GET"]),
            Route("/devices", list_devices, methods=["GET"]),
            Route("/devices/retire", retire, methods=["POST"]),
            Route("/devices/register", register, methods=["POST"]),
            Route("/devices/{device_id}/self-test", self_test, methods=["POST"]),
        ],
        exception_handlers={_Invalid: invalid},
    )


async def serve_technician_socket(
    devices: DeviceManager,
    data_dir: Path,
    status: AgentStatus | None = None,
    outbox: OutboxCounts | None = None,
    counters: AgentCounters | None = None,
) -> None:
    """Serve on ``data_dir/technician.sock`` until cancelled; the socket is removed after."""
    path = data_dir / SOCKET_FILE
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by a killed agent; a live one would hold the outbox lock too
    config = uvicorn.Config(
        create_technician_app(devices, status, outbox, counters),
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
