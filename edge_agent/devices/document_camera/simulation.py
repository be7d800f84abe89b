"""The simulated document camera: a generated video file OpenCV opens like a UVC node."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from edge_agent.devices.description import DeviceDescription
from edge_agent.devices.document_camera.simulator import DocumentCameraSimulator
from edge_agent.devices.simulation import SIM_MANUFACTURER, SimulatedDevice, SimulationOptions


def udev_description(path: str) -> DeviceDescription:
    """A UVC document camera's capture node (here a video file OpenCV opens alike)."""
    return DeviceDescription(
        subsystem="video4linux",
        device_node=path,
        sys_path="/sys/devices/simulated/usb1/1-3/1-3:1.0/video4linux/video0",
        vendor_id="2bdf",
        product_id="0280",
        serial="SIMCAM0001",
        product="SIM Document Camera",
        manufacturer=SIM_MANUFACTURER,
        port_path="simulated-usb-0:3:1.0",
        kernel_driver="uvcvideo",
        interface_classes=("0e",),
    )


async def simulate(stack: AsyncExitStack, options: SimulationOptions) -> SimulatedDevice:
    """A 1280x960 camera."""
    simulator = DocumentCameraSimulator(width=1280, height=960, separate_process=True)
    camera = await asyncio.to_thread(simulator.start)
    stack.callback(camera.stop)
    return SimulatedDevice(simulator=camera, usb=udev_description(camera.device_path))
