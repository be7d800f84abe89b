"""The simulated ID-card reader: a pty behind a CP210x bridge, with hot-plug."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack

from edge_agent.devices.description import DeviceDescription
from edge_agent.devices.id_card_reader.cards import make_card
from edge_agent.devices.id_card_reader.simulator import IdCardSimulator
from edge_agent.devices.simulation import SIM_MANUFACTURER, SimulatedDevice, SimulationOptions


def udev_description(device_node: str) -> DeviceDescription:
    """An ID-card reader behind a CP210x bridge, as udev describes it."""
    return DeviceDescription(
        subsystem="tty",
        device_node=device_node,
        sys_path="/sys/devices/simulated/usb1/1-1/1-1:1.0/tty/idcard",
        vendor_id="10c4",
        product_id="ea60",
        serial="SIMIDCARD0001",
        product="SIM IDCard Reader",
        manufacturer=SIM_MANUFACTURER,
        port_path="simulated-usb-0:1:1.0",
        kernel_driver="cp210x",
        interface_classes=("ff",),
        interface_num="00",
    )


def _new_reader() -> IdCardSimulator:
    simulator = IdCardSimulator().start()
    simulator.place_card(make_card())
    return simulator


async def simulate(stack: AsyncExitStack, options: SimulationOptions) -> SimulatedDevice:
    """A reader with a card on it; ``unplug``/``replug`` close and reopen its pty."""
    device = SimulatedDevice(simulator=await asyncio.to_thread(_new_reader))

    def stop() -> None:
        if device.simulator is not None:
            with contextlib.suppress(OSError):
                device.simulator.stop()

    async def unplug() -> None:
        simulator, device.simulator = device.simulator, None
        await asyncio.to_thread(simulator.unplug)
        await asyncio.to_thread(simulator.stop)

    async def replug() -> DeviceDescription:
        device.simulator = await asyncio.to_thread(_new_reader)
        device.usb = udev_description(device.simulator.device_path)
        return device.usb

    stack.callback(stop)
    device.usb = udev_description(device.simulator.device_path)
    device.unplug, device.replug = unplug, replug
    return device
