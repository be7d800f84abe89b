"""The edge agent in this process with every device simulated (``simulate=True``).

Each simulator speaks its device's real protocol (the ID-card reader over a pty, the
network devices over TCP) through the real discovery, profiles and drivers; the local
API listens on a free loopback port. In-process so a test can play the citizen on the
simulated pad (``agent.assembled.simulation``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from edge_agent.daemon import Agent
from edge_agent.settings import load_settings
from edge_agent.simulate import SimulatedHardware


@asynccontextmanager
async def simulated_agent(
    mqtt_url: str,
    outlet_id: str,
    data_dir: Path,
    queue_windows: Sequence[dict[str, Any]],
    **settings: Any,
) -> AsyncIterator[tuple[Agent, SimulatedHardware, int]]:
    """Run the agent until the block ends; yields it, its simulators and its API's port.

    ``settings``: more agent settings, as an outlet's TOML file would set them.

    It must run on the main thread's loop: the simulation installs signal handlers.
    """
    loaded = load_settings(
        mqtt_url=mqtt_url, outlet_id=outlet_id, data_dir=data_dir, keepalive_s=5,
        reconnect_base_s=0.2, reconnect_cap_s=1.0, telemetry_interval_s=1.0,
        outbox_rate_per_s=200.0, simulate=True, local_api_port=0,
        queue_windows=list(queue_windows), **settings,
    )  # fmt: skip
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def listening(number: int) -> None:
        if not port.done():
            port.set_result(number)

    agent = Agent(loaded, on_local_api=listening)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop), name="simulated-agent")
    try:
        async with asyncio.timeout(60):
            while not port.done():
                if task.done():
                    task.result()  # raises why the agent ended
                    raise AssertionError("the agent ended before its local API listened")
                await asyncio.sleep(0.05)
        assert agent.assembled is not None
        simulation = agent.assembled.simulation
        assert simulation is not None
        yield agent, simulation, port.result()
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await task
