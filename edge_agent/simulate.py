"""``edge-agent run --simulate``: a simulator of every device kind, attached like hardware.

Each kind package's ``simulate`` (found through the kind registry) starts its simulator,
which speaks the device's real bytes, and says how discovery finds it: USB devices are
described to a ``ControlledSource`` exactly as udev would describe them; network devices
become configured network devices of the shipped network profiles. The agent reaches
them through the same discovery, profile matching, probing and driver code as hardware.

``unplug()`` / ``replug()`` pull and put back the hot-pluggable simulated devices (the
ID-card reader); the daemon wires them to SIGUSR1 and SIGUSR2. Leaving the ``async with``
block stops every simulator. The simulated outlet's windows: see ``simulated_windows``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Self

from edge_agent.devices.caller_keypad.simulation import udev_description as keypad_description
from edge_agent.devices.evaluation_pad.citizen import rate_every_request
from edge_agent.devices.evaluation_pad.simulation import DEVICE_ID as PAD_DEVICE_ID
from edge_agent.devices.led_screen.simulation import DEVICE_ID as LED_DEVICE_ID
from edge_agent.devices.registry import kinds
from edge_agent.devices.simulation import SimulatedDevice, SimulationOptions
from edge_agent.discovery import ControlledSource, DeviceDescription, NetworkDeviceConfig
from edge_agent.discovery.matching import make_device_id, stable_identity
from edge_agent.queueing import WindowConfig

__all__ = ["SimulatedHardware", "keypad_device_id", "simulated_windows"]

log = logging.getLogger(__name__)

KEYPAD_PROFILE = "caller-keypad"


def keypad_device_id() -> str:
    """The stable id discovery gives the simulated keypad bus (from its serial number)."""
    identity = stable_identity(keypad_description("/dev/null"))
    assert identity is not None  # the description carries a serial number
    return make_device_id(KEYPAD_PROFILE, identity)


def simulated_windows(business_types: Sequence[str]) -> tuple[WindowConfig, ...]:
    """Windows 1 and 2 of the simulated outlet, splitting ``business_types`` between them.

    Window 1 has the simulated pad; both have their LED screen and keypad at the bus
    address equal to the window number. One type only: window 1 alone serves it.
    """
    codes = tuple(business_types)
    half = max(1, (len(codes) + 1) // 2)
    keypad = keypad_device_id()
    windows = [
        WindowConfig(
            window="1",
            business_types=codes[:half],
            pad=PAD_DEVICE_ID,
            led=LED_DEVICE_ID,
            led_address=1,
            keypad=keypad,
            keypad_address=1,
        )
    ]
    if codes[half:]:
        windows.append(
            WindowConfig(
                window="2",
                business_types=codes[half:],
                led=LED_DEVICE_ID,
                led_address=2,
                keypad=keypad,
                keypad_address=2,
            )
        )
    return tuple(windows)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class SimulatedHardware:
    """Starts every kind's simulator; ``source`` and ``network_devices`` go to discovery.

    ``pcsc`` forces the social-security simulator on or off; None: when pcscd and vpcd
    are installed. ``ratings`` (stars, 1-5): a simulated citizen rates every request on
    the simulated pad with them in turn (demos); empty: nobody rates.
    """

    def __init__(self, *, pcsc: bool | None = None, ratings: Sequence[int] = ()) -> None:
        self._options = SimulationOptions(pcsc=pcsc)
        self._ratings = tuple(ratings)
        self._stack = AsyncExitStack()
        self.source = ControlledSource()
        self.devices: dict[str, SimulatedDevice] = {}
        self.network_devices: tuple[NetworkDeviceConfig, ...] = ()
        self.usb_devices: list[DeviceDescription] = []

    @property
    def count(self) -> int:
        """How many simulated devices were attached at start (USB-style plus network)."""
        return len(self.usb_devices) + len(self.network_devices)

    def simulator(self, kind: str) -> Any:
        """The running simulator of ``kind`` (None if that kind could not be simulated)."""
        device = self.devices.get(kind)
        return None if device is None else device.simulator

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()
        log.info("simulators stopped")

    async def _start(self) -> None:
        network: list[NetworkDeviceConfig] = []
        for name, kind in kinds().items():
            if kind.simulate is None:
                continue
            device = await kind.simulate(self._stack, self._options)
            if device is None:
                continue
            self.devices[name] = device
            if device.usb is not None:
                self.usb_devices.append(device.usb)
                self.source.add(device.usb, emit=False)
            if device.network is not None:
                network.append(device.network)
        self.network_devices = tuple(network)
        log.info("simulated hardware: %d devices", self.count)
        pad = self.simulator("evaluation_pad")
        if self._ratings and pad is not None:
            citizen = asyncio.get_running_loop().create_task(
                rate_every_request(pad, self._ratings), name="simulated-citizen"
            )
            self._stack.push_async_callback(_cancel, citizen)

    # ---- hot-plug ----------------------------------------------------------------

    async def unplug(self) -> bool:
        """Pull the hot-pluggable devices out: each closes and a ``remove`` event follows."""
        pulled = False
        for name, device in self.devices.items():
            if device.unplug is None or device.usb is None or device.simulator is None:
                continue
            log.info("simulated unplug of %s", name)
            description = device.usb
            await device.unplug()
            self.source.remove(description)
            pulled = True
        return pulled

    async def replug(self) -> bool:
        """Plug them back in (same serial number, so the same device id)."""
        plugged = False
        for name, device in self.devices.items():
            if device.replug is None or device.simulator is not None:
                continue
            log.info("simulated replug of %s", name)
            self.source.add(await device.replug())
            plugged = True
        return plugged
