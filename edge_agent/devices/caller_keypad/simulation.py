"""The simulated caller-keypad bus: a pty behind an FTDI adapter."""

from __future__ import annotations

from contextlib import AsyncExitStack

from edge_agent.devices.caller_keypad.simulator import CallerKeypadSimulator
from edge_agent.devices.description import DeviceDescription
from edge_agent.devices.simulation import SIM_MANUFACTURER, SimulatedDevice, SimulationOptions


def udev_description(device_node: str) -> DeviceDescription:
    """The caller-keypad bus behind an FTDI adapter with its product string set."""
    return DeviceDescription(
        subsystem="tty",
        device_node=device_node,
        sys_path="/sys/devices/simulated/usb1/1-2/1-2:1.0/tty/keypad",
        vendor_id="0403",
        product_id="6001",
        serial="SIMKEYPAD0001",
        product="SIM Caller Keypad Bus",
        manufacturer=SIM_MANUFACTURER,
        port_path="simulated-usb-0:2:1.0",
        kernel_driver="ftdi_sio",
        interface_classes=("ff",),
        interface_num="00",
    )


async def simulate(stack: AsyncExitStack, options: SimulationOptions) -> SimulatedDevice:
    """The keypad bus on a pseudo-terminal."""
    keypad = await stack.enter_async_context(CallerKeypadSimulator(transport="pty"))
    return SimulatedDevice(simulator=keypad, usb=udev_description(keypad.address))
