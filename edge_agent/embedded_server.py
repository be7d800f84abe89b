"""uvicorn run inside the agent's event loop: the local API and the technician socket.

Two changes to ``uvicorn.Server``, both for an agent that idles most of the day:

- no signal handlers of its own (the daemon owns SIGTERM/SIGINT);
- its main loop does not tick: uvicorn wakes ten times a second to refresh the
  ``Date`` header and to look at its stop flag. Here the header is made when a
  response reads it (``_DateOnRead``, to the second as before) and a stop request
  (``should_exit = True``) wakes the loop at once. The ticks of the agent's two servers
  were most of its idle wake-ups (docs/performance.md, "Agent footprint"). A server
  configured with a request limit or a ``callback_notify`` keeps uvicorn's tick, which
  those need (the agent uses neither).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Generator
from email.utils import formatdate

import uvicorn
from uvicorn.server import ServerState

__all__ = ["EmbeddedServer"]


class _DateOnRead(ServerState):
    """uvicorn's shared server state, whose ``default_headers`` (the ``Date`` header and
    the configured ones) are made when a response reads them, once per second at most,
    instead of by a tick every second."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__()
        self._config = config
        self._second = -1
        self._headers: list[tuple[bytes, bytes]] = []

    @property
    def default_headers(self) -> list[tuple[bytes, bytes]]:
        now = time.time()
        if int(now) != self._second:
            self._second = int(now)
            date = [(b"date", formatdate(now, usegmt=True).encode())]
            config = self._config
            self._headers = (date if config.date_header else []) + config.encoded_headers
        return self._headers

    @default_headers.setter
    def default_headers(self, _value: list[tuple[bytes, bytes]]) -> None:
        """uvicorn's tick and ``ServerState.__init__`` assign it: made on read instead."""


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals alone and idles quietly."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._exit_requested = asyncio.Event()
        super().__init__(config)
        self.server_state = _DateOnRead(config)

    @property
    def should_exit(self) -> bool:
        """Set to stop the server (uvicorn's flag); setting it wakes the main loop."""
        return self._exit_requested.is_set()

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value:
            self._exit_requested.set()
        else:
            self._exit_requested.clear()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's startup, with its ``sys.exit`` on a failed bind turned into OSError.

        uvicorn exits the process when it cannot listen. Inside the agent that
        ``SystemExit`` would escape the task and end the whole event loop: one taken
        port would stop presence and the outbox too, and the agent would crash-loop
        under systemd instead of reporting the reason.
        """
        try:
            await super().startup(sockets=sockets)
        except SystemExit as exc:
            raise OSError(f"the server could not start (uvicorn exit {exc.code})") from None

    async def main_loop(self) -> None:
        if self.config.callback_notify is not None or self.limit_max_requests is not None:
            await super().main_loop()  # uvicorn's tick checks those
            return
        await self._exit_requested.wait()
