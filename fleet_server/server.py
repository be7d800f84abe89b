"""Serve the app with uvicorn in this process, and say where once it listens.

``serve`` returns normally after SIGTERM or SIGINT and a graceful shutdown; it raises
``StartupFailed`` if the app never came up (e.g. the database is unreachable).
"""

from __future__ import annotations

import asyncio
import signal
import socket
from types import FrameType

import uvicorn

from fleet_server.app import create_app
from fleet_server.routing.targets import TargetsConfig
from fleet_server.settings import Settings


class StartupFailed(RuntimeError):
    """The server stopped before it started listening."""


def serve(settings: Settings, *, targets: TargetsConfig | None = None) -> None:
    """Run the API and the ingest until a signal; print ``fleet-server listening on URL``.

    ``targets``: the targets file as the command already validated it (else read at start).
    """
    host, port = settings.listen_address
    config = uvicorn.Config(
        create_app(settings, targets=targets),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = _Server(config)
    # uvicorn re-raises the signal that stopped it once it is done; with these handlers
    # in place that ends in a normal return (exit code 0) instead of a signal death.
    signals: list[int] = []

    def _remember(signum: int, _frame: FrameType | None) -> None:
        signals.append(signum)

    previous = {sig: signal.signal(sig, _remember) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        asyncio.run(server.serve())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise StartupFailed("the fleet server did not start; see the log above")


class _Server(uvicorn.Server):
    """uvicorn's server, announcing the bound address once it really listens."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            port = self.servers[0].sockets[0].getsockname()[1]
            host = self.config.host
            shown = f"[{host}]" if ":" in host else host
            print(f"fleet-server listening on http://{shown}:{port}", flush=True)
