"""``serve_local_api``: run the local API with uvicorn inside the agent's event loop.

Bound to 127.0.0.1 only: any other host is refused, because the API hands out ID-card
data and its only protection against the LAN is not listening on it. uvicorn's own
signal handling is switched off (the daemon owns SIGTERM/SIGINT; ``EmbeddedServer``); cancelling the
coroutine stops the server gracefully within ``shutdown_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Final

import uvicorn

from edge_agent.counters import AgentCounters
from edge_agent.embedded_server import EmbeddedServer
from edge_agent.local_api.app import create_local_app
from edge_agent.local_api.apps import AppRegistry
from edge_agent.local_api.context import LocalApiOptions
from edge_agent.runtime import AgentRuntime

__all__ = ["LOCAL_HOST", "serve_local_api"]

log = logging.getLogger(__name__)

LOCAL_HOST: Final = "127.0.0.1"


async def serve_local_api(
    runtime: AgentRuntime,
    *,
    port: int,
    apps: AppRegistry,
    host: str = LOCAL_HOST,
    options: LocalApiOptions | None = None,
    announcements_dir: Path | None = None,
    state_dir: Path | None = None,
    counters: AgentCounters | None = None,
    on_started: Callable[[int], None] | None = None,
    startup_timeout_s: float = 10.0,
    shutdown_timeout_s: float = 5.0,
) -> None:
    """Serve until cancelled; ``on_started(port)`` once listening (port 0 = a free one).

    Raises ``ValueError`` for a host other than 127.0.0.1 and ``OSError`` when the port
    cannot be bound (another agent already runs, or the port is taken).
    """
    if host != LOCAL_HOST:
        raise ValueError(f"the local API listens on {LOCAL_HOST} only, not {host!r}")
    app = create_local_app(
        runtime,
        apps=apps,
        options=options,
        announcements_dir=announcements_dir,
        state_dir=state_dir,
        counters=counters,
    )
    config = uvicorn.Config(
        app,
        host=LOCAL_HOST,
        port=port,
        log_config=None,  # the CLI configured logging; keep it
        access_log=False,  # paths only, but keep request logging to our own counters
        server_header=False,
        proxy_headers=False,  # nothing sits in front of a loopback API
        lifespan="on",
        timeout_graceful_shutdown=int(shutdown_timeout_s),
    )
    server = EmbeddedServer(config)
    task = asyncio.create_task(server.serve(), name="local-api:uvicorn")
    try:
        async with asyncio.timeout(startup_timeout_s):
            while not server.started:
                if task.done():
                    break
                await asyncio.sleep(0.02)
        if task.done():
            await task  # startup failed: re-raise its error
            raise OSError(f"local API could not listen on {LOCAL_HOST}:{port}")
        bound = _bound_port(server) or port
        log.info("local API listening on http://%s:%d", LOCAL_HOST, bound)
        if on_started is not None:
            on_started(bound)
        # Shielded: a cancel of this coroutine must become a graceful stop (below),
        # not a cancel of uvicorn that would leave its sockets open.
        await asyncio.shield(task)
    finally:
        if not task.done():
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([task], timeout=shutdown_timeout_s + 1.0)
            if not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=1.0)


def _bound_port(server: uvicorn.Server) -> int | None:
    for listener in getattr(server, "servers", []):
        for sock in listener.sockets:
            return int(sock.getsockname()[1])
    return None
