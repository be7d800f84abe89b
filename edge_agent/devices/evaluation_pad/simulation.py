"""The simulated evaluation pad of window 1, on loopback TCP (a configured network device)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Final

from edge_agent.devices.evaluation_pad.simulator import EvaluationPadSimulator
from edge_agent.devices.network_config import NetworkDeviceConfig
from edge_agent.devices.simulation import SimulatedDevice, SimulationOptions

PROFILE: Final = "haochaping-pad"
DEVICE_ID: Final = "sim-window-1-pad"


async def simulate(stack: AsyncExitStack, options: SimulationOptions) -> SimulatedDevice:
    """The evaluation pad of window 1, listening on a loopback TCP port."""
    simulator = await stack.enter_async_context(EvaluationPadSimulator(transport="tcp"))
    network = NetworkDeviceConfig(profile=PROFILE, address=simulator.address, device_id=DEVICE_ID)
    return SimulatedDevice(simulator=simulator, network=network)
