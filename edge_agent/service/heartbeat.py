"""What the running agent tells systemd: ready once online, its status, watchdog pings.

``READY=1`` goes once the agent is connected to the broker with its birth published
(its devices were discovered before the first connect, docs/updates.md step 8). The
pings come from a task on the agent's event loop, so a hung loop stops them and
systemd restarts the service after ``WatchdogSec``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from edge_agent.service.notify import Notifier

POLL_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class AgentState:
    """What the service manager's status line says."""

    connected: bool
    status: str


async def keep_service_manager_informed(
    notifier: Notifier, state: Callable[[], AgentState]
) -> None:
    """Run until cancelled: READY once connected, STATUS on change, WATCHDOG pings."""
    if not notifier.enabled:
        return
    loop = asyncio.get_running_loop()
    half = None if notifier.watchdog_s is None else notifier.watchdog_s / 2
    interval = POLL_S if half is None else min(POLL_S, half)
    ready = False
    shown = ""
    last_ping = float("-inf")
    while True:
        now = state()
        if not ready and now.connected:
            ready = await asyncio.to_thread(notifier.ready, now.status)
            shown = now.status
        elif now.status != shown:
            await asyncio.to_thread(notifier.status, now.status)
            shown = now.status
        if half is not None and loop.time() - last_ping >= half:
            await asyncio.to_thread(notifier.watchdog)
            last_ping = loop.time()
        await asyncio.sleep(interval)
