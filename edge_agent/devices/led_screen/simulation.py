"""The simulated LED controller of the windows, on loopback TCP (a network device)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Final

from edge_agent.devices.led_screen.simulator import LedScreenSimulator
from edge_agent.devices.network_config import NetworkDeviceConfig
from edge_agent.devices.simulation import SimulatedDevice, SimulationOptions

PROFILE: Final = "led-window-screen"
DEVICE_ID: Final = "sim-window-led"


async def simulate(stack: AsyncExitStack, options: SimulationOptions) -> SimulatedDevice:
    """The LED controller of the windows, listening on a loopback TCP port."""
    simulator = await stack.enter_async_context(LedScreenSimulator(transport="tcp"))
    network = NetworkDeviceConfig(profile=PROFILE, address=simulator.address, device_id=DEVICE_ID)
    return SimulatedDevice(simulator=simulator, network=network)
