"""The simulated ticket printer, on loopback TCP (a configured network device)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Final

from edge_agent.devices.network_config import NetworkDeviceConfig
from edge_agent.devices.simulation import SimulatedDevice, SimulationOptions
from edge_agent.devices.ticket_printer.simulator import EscPosPrinterSimulator

PROFILE: Final = "escpos-network-printer"
DEVICE_ID: Final = "sim-ticket-printer"


async def simulate(stack: AsyncExitStack, options: SimulationOptions) -> SimulatedDevice:
    """The ticket printer, listening on a loopback TCP port."""
    simulator = await stack.enter_async_context(EscPosPrinterSimulator(transport="tcp"))
    network = NetworkDeviceConfig(profile=PROFILE, address=simulator.address, device_id=DEVICE_ID)
    return SimulatedDevice(simulator=simulator, network=network)
