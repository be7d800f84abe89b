"""A whole outlet for Chromium tests of the clerks' pages, reachable from a sync test.

The edge agent (``simulate=True``: every device a simulator speaking its real protocol,
the ID-card reader over a pty) runs in-process as in ``tests/e2e/test_counter_flow.py``,
on the main thread's loop; the browser is driven from a worker thread (Playwright's sync
API cannot run inside a loop), which plays the citizen on the simulated pad through the
agent's loop.
Behind the agent: the session's Mosquitto, a real ``fleet-server`` process and the
recording upstream, so a submission's 办件编号 comes back as ``transaction.result``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edge_agent.daemon import Agent
from edge_agent.local_api import AppRegistry
from edge_agent.simulate import SimulatedHardware
from govedge_testbed import Mosquitto
from govedge_wire.config import EvaluationConfig
from tests.conftest import missing
from tests.health.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.simulated_agent import simulated_agent

WINDOW = "1"
CLERK = "S007"
QUEUE_WINDOWS = [
    {"window": WINDOW, "business_types": ["general"], "pad": "sim-window-1-pad",
     "led": "sim-window-led"},
]  # fmt: skip
REGION = "330902"  # routed to the "zhoushan" target by the test catalogue
ITEM = "000101"
T = TypeVar("T")


@dataclass
class RunningOutlet:
    """The agent's port and data dir, its simulators, and a way into its loop."""

    port: int
    data_dir: Path
    loop: asyncio.AbstractEventLoop
    simulation: SimulatedHardware
    agent: Agent

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def register(self, name: str, *origins: str) -> str:
        """``edge-agent apps add NAME --origin …``: the running agent picks it up."""
        _, token = AppRegistry(self.data_dir).add(name, origins=list(origins))
        return token

    def run(self, coro: Coroutine[Any, Any, Any], *, timeout: float = 30) -> Any:
        """Run ``coro`` on the agent's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def set_evaluation_profile(self, evaluation: EvaluationConfig) -> None:
        """The region's 好差评 profile as a fleet config's ``evaluation`` part sets it."""

        async def apply() -> None:
            assert self.agent.assembled is not None
            live = self.agent.assembled.runtime.live
            assert live is not None
            live.evaluation = evaluation

        self.run(apply())

    def citizen_rates(self, stars: int, *, within: float = 30) -> dict[str, Any]:
        """Wait until the pad shows a request, then press ``stars``; returns what it showed."""
        pad, shown = self._pad_request(within)
        self.loop.call_soon_threadsafe(pad.press, stars)
        return shown

    def citizen_walks_away(self, *, within: float = 30) -> dict[str, Any]:
        """Wait until the pad shows a request, then leave without rating."""
        pad, shown = self._pad_request(within)
        self.loop.call_soon_threadsafe(pad.walk_away)
        return shown

    def _pad_request(self, within: float) -> tuple[Any, dict[str, Any]]:
        pad = self.simulation.simulator("evaluation_pad")
        assert pad is not None
        shown: dict[str, Any] = self.run(pad.wait_for_request(within=within), timeout=within + 5)
        return pad, shown


def with_outlet(
    broker: Mosquitto, outlet_id: str, data_dir: Path, drive: Callable[[RunningOutlet], T]
) -> T:
    """Run the simulated agent on this (main) thread's loop and ``drive`` in a worker thread.

    The agent installs signal handlers (the simulation's hot-plug signals), which only the
    main thread may; Playwright's sync API is happy in any thread without a running loop.
    """
    data_dir.mkdir(parents=True)

    async def scenario() -> T:
        async with simulated_agent(broker.url, outlet_id, data_dir, QUEUE_WINDOWS) as (
            agent,
            simulation,
            port,
        ):
            loop = asyncio.get_running_loop()
            running = RunningOutlet(port, data_dir, loop, simulation, agent)
            return await asyncio.to_thread(drive, running)

    return asyncio.run(scenario())


@contextlib.contextmanager
def chromium(*extra_args: str) -> Iterator[Any]:
    """Debian's Chromium under Playwright, with the web-UI tests' flags plus ``extra_args``."""
    if not Path(CHROMIUM).exists():
        missing("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    # A deadline, not a speed check: the machine may be busy (espeak renders each call).
    expect.set_options(timeout=20_000)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield browser
        finally:
            browser.close()
