"""Serve the app with uvicorn in this process, and say where once it listens.

``serve`` returns normally after SIGTERM or SIGINT and a graceful shutdown; it raises
``StartupFailed`` if the app never came up (e.g. the database is unreachable). With
``tls_cert``/``tls_key`` it serves HTTPS (versions and ciphers: OpenSSL's defaults, TLS
1.2 or newer on Debian 12); ``check_tls_files`` loads them first, so a wrong path or a
key that does not match fails with one line.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import ssl
from types import FrameType

import uvicorn

from fleet_server.app import create_app
from fleet_server.routing.targets import TargetsConfig
from fleet_server.settings import Settings, is_loopback_host

logger = logging.getLogger(__name__)


class StartupFailed(RuntimeError):
    """The server stopped before it started listening."""


def check_tls_files(settings: Settings) -> None:
    """Load the HTTPS certificate and key once; ``StartupFailed`` names what is wrong."""
    if settings.tls_cert is None or settings.tls_key is None:
        return
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    except ssl.SSLError as exc:  # before OSError, its base class
        raise StartupFailed(
            f"TLS certificate {settings.tls_cert} and key {settings.tls_key} are unusable "
            f"(not PEM, or the key does not match): {exc.reason or exc}"
        ) from None
    except OSError as exc:
        raise StartupFailed(f"cannot read the TLS certificate or key: {exc}") from None


def serve(settings: Settings, *, targets: TargetsConfig | None = None) -> None:
    """Run the API and the ingest until a signal; print ``fleet-server listening on URL``.

    ``targets``: the targets file as the command already validated it (else read at start).
    """
    host, port = settings.listen_address
    if not settings.tls and not is_loopback_host(host):
        logger.warning(
            "serving plain HTTP on %s (allow_plain_http): tokens and cookies travel in clear",
            settings.listen,
        )
    config = uvicorn.Config(
        create_app(settings, targets=targets),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
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
            _settle_startup_heap()
            port = self.servers[0].sockets[0].getsockname()[1]
            host = self.config.host
            shown = f"[{host}]" if ":" in host else host
            scheme = "https" if self.config.is_ssl else "http"
            print(f"fleet-server listening on {scheme}://{shown}:{port}", flush=True)


def _settle_startup_heap() -> None:
    """Take the start-up's objects (modules, models, routes: ~200,000 here) out of the
    cyclic collector's sight. Every full collection walked them all, holding the
    interpreter the ingest and the delivery share: a full collection at 10,000 outlets
    took 150-290 ms under load, and the submissions arriving meanwhile waited
    (docs/performance.md, "Issue 17, session 15"). Frozen objects are still freed by
    reference counting; garbage frozen now would never be collected, so collect first.
    """
    gc.collect()
    gc.freeze()
    logger.debug("start-up heap frozen: %d objects", gc.get_freeze_count())
