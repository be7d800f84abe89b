"""uvicorn run inside the agent's event loop: the local API and the technician socket.

Two changes to ``uvicorn.Server``, both for an agent that idles most of the day:

- no signal handlers of its own (the daemon owns SIGTERM/SIGINT);
- its main loop wakes once a second (to refresh the ``Date`` header, which has
  one-second resolution anyway) instead of ten times, and a stop request
  (``should_exit = True``) wakes it at once, so shutdown is not slower for it.
  uvicorn's 0.1 s ticks of two servers were most of the agent's idle wake-ups
  (docs/performance.md, "Agent footprint").
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from typing import Final

import uvicorn

__all__ = ["EmbeddedServer"]

# uvicorn refreshes the Date header on every tenth tick of 0.1 s; one tick of 1 s here.
_TICK_S: Final = 1.0
_TICKS_PER_SECOND: Final = 10
_COUNTER_WRAP: Final = 864000  # uvicorn's own wrap of the tick counter


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals alone and idles quietly."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._exit_requested = asyncio.Event()
        super().__init__(config)

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
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            # Every tick is a "whole second" tick for ``on_tick`` (it refreshes the Date
            # header when the counter is a multiple of ten).
            counter = (counter + _TICKS_PER_SECOND) % _COUNTER_WRAP
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_TICK_S):
                    await self._exit_requested.wait()
            should_exit = await self.on_tick(counter)
