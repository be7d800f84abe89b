"""ESC/POS printer simulators on loopback TCP, served by an event loop in a thread, for
the e2e tests whose agent is a separate process (its network printers are these)."""

from __future__ import annotations

import asyncio
import threading
from contextlib import AsyncExitStack

from edge_agent.devices.ticket_printer.simulator import EscPosPrinterSimulator


class PrinterSims:
    """Printers by name; ``plug`` starts one (on ``port``, 0: a free one)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.stack = AsyncExitStack()
        self.sims: dict[str, EscPosPrinterSimulator] = {}
        self.thread.start()

    def plug(self, name: str, port: int = 0) -> EscPosPrinterSimulator:
        async def start() -> EscPosPrinterSimulator:
            sim = EscPosPrinterSimulator(transport="tcp", port=port)
            return await self.stack.enter_async_context(sim)

        self.sims[name] = asyncio.run_coroutine_threadsafe(start(), self.loop).result(30)
        return self.sims[name]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.stack.aclose(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
