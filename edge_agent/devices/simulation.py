"""What a kind's ``simulation`` module gives ``edge-agent run --simulate``.

Each kind package may declare ``simulate``: it starts the kind's simulator(s) on an exit
stack and says how discovery finds it, a udev-style description (USB devices) or a
configured network device. ``edge_agent.simulate`` iterates the kinds; no kind is named
there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Final

from edge_agent.devices.description import DeviceDescription
from edge_agent.devices.network_config import NetworkDeviceConfig

SIM_MANUFACTURER: Final = "govedge simulator"


@dataclass(frozen=True)
class SimulationOptions:
    """``pcsc`` forces the PC/SC (social-security) simulator on or off; None: if it can."""

    pcsc: bool | None = None


@dataclass
class SimulatedDevice:
    """A started simulator and how discovery sees it (``usb`` or ``network``).

    ``unplug``/``replug`` (hot-plug, when the kind supports it) pull the device and put
    it back; ``replug`` returns the new description.
    """

    simulator: Any
    usb: DeviceDescription | None = None
    network: NetworkDeviceConfig | None = None
    unplug: Callable[[], Awaitable[None]] | None = None
    replug: Callable[[], Awaitable[DeviceDescription]] | None = None


Simulate = Callable[[AsyncExitStack, SimulationOptions], Awaitable[SimulatedDevice | None]]
