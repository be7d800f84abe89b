"""``edge-agent run --simulate``: a simulator of every device kind, attached like hardware.

Each simulator speaks its device's real bytes; the agent reaches it through the same
discovery, profile matching, probing and driver code as a real device:

- USB devices (ID-card reader and caller keypad on pseudo-terminals, the document camera
  as a generated video file, the social-security reader in pcscd through vpcd) are
  described by a ``ControlledSource`` exactly as udev would describe them (subsystem,
  vendor/product ids, product string, serial number), so the shipped profiles match them.
- Network devices (evaluation pad, ESC/POS printer, LED screen) listen on loopback TCP
  ports and are added as configured network devices of the shipped network profiles.
- The social-security card only when ``pcsc_vpcd.environment_ok()`` (pcscd and vpcd are
  installed); without them that one kind is left out, and a log line says why.

``windows`` is the simulated outlet's window set, used when the config declares no
``[[queue_windows]]``: window 1 (综合业务 and 社保医保) with the pad, LED address 1 and
keypad address 1; window 2 (不动产 and 税务) with LED address 2 and keypad address 2 (no
pad of its own). So the demo and the local API call tickets out of the box.

``unplug()`` / ``replug()`` pull and put back the ID-card reader (pty closed and a udev
style ``remove`` event, then a fresh pty and an ``add``); the daemon wires them to SIGUSR1
and SIGUSR2 so a test or a demo can exercise hot-plug in a running agent. Leaving the
``async with`` block stops every simulator (and a pcscd this process started).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Final, Self

from edge_agent.devices.caller_keypad.simulator import CallerKeypadSimulator
from edge_agent.devices.document_camera.simulator import DocumentCameraSimulator
from edge_agent.devices.evaluation_pad.simulator import EvaluationPadSimulator
from edge_agent.devices.id_card_reader.simulator import IdCardSimulator, make_card
from edge_agent.devices.led_screen.simulator import LedScreenSimulator
from edge_agent.devices.social_security_card_reader.simulator import SocialSecurityCardSimulator
from edge_agent.devices.social_security_card_reader.vpcd import (
    PcscStack,
    PcscUnavailable,
    environment_ok,
)
from edge_agent.devices.ticket_printer.simulator import EscPosPrinterSimulator
from edge_agent.discovery import ControlledSource, DeviceDescription, NetworkDeviceConfig
from edge_agent.discovery.matching import make_device_id, stable_identity
from edge_agent.queueing import WindowConfig

__all__ = ["SimulatedHardware"]

log = logging.getLogger(__name__)

PCSC_START_TIMEOUT_S: Final = 10.0
CARD_CONNECT_TIMEOUT_S: Final = 3.0
SIM_MANUFACTURER: Final = "govedge simulator"

# Network devices of the simulated outlet: (profile, device id).
PAD_DEVICE: Final = ("haochaping-pad", "sim-window-1-pad")
PRINTER_DEVICE: Final = ("escpos-network-printer", "sim-ticket-printer")
LED_DEVICE: Final = ("led-window-screen", "sim-window-led")
KEYPAD_PROFILE: Final = "caller-keypad"


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
            pad=PAD_DEVICE[1],
            led=LED_DEVICE[1],
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
                led=LED_DEVICE[1],
                led_address=2,
                keypad=keypad,
                keypad_address=2,
            )
        )
    return tuple(windows)


def id_card_description(device_node: str) -> DeviceDescription:
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


def keypad_description(device_node: str) -> DeviceDescription:
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


def camera_description(path: str) -> DeviceDescription:
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


def ssc_reader_description(reader_name: str) -> DeviceDescription:
    """A CCID smart-card reader; its PC/SC reader name is where the driver finds it."""
    return DeviceDescription(
        subsystem="usb",
        sys_path="/sys/devices/simulated/usb1/1-4",
        vendor_id="072f",
        product_id="90cc",
        serial="SIMSSC0001",
        product="SIM CCID Reader",
        manufacturer=SIM_MANUFACTURER,
        port_path="simulated-usb-0:4",
        interface_classes=("0b",),
        address=reader_name,
    )


class SimulatedHardware:
    """Starts every simulator; ``source`` and ``network_devices`` go to the DeviceManager.

    ``pcsc`` forces the social-security simulator on or off; None asks
    ``environment_ok()``.
    """

    def __init__(self, *, pcsc: bool | None = None) -> None:
        self._want_pcsc = pcsc
        self._stack = AsyncExitStack()
        self.source = ControlledSource()
        self.network_devices: tuple[NetworkDeviceConfig, ...] = ()
        self.id_card: IdCardSimulator | None = None
        self.keypad: CallerKeypadSimulator | None = None
        self.camera: DocumentCameraSimulator | None = None
        self.pad: EvaluationPadSimulator | None = None
        self.printer: EscPosPrinterSimulator | None = None
        self.led: LedScreenSimulator | None = None
        self.ssc_card: SocialSecurityCardSimulator | None = None
        self.pcsc: PcscStack | None = None
        self._id_card_description: DeviceDescription | None = None
        self.usb_devices: list[DeviceDescription] = []

    @property
    def count(self) -> int:
        """How many simulated devices were attached at start (USB-style plus network)."""
        return len(self.usb_devices) + len(self.network_devices)

    def _attach(self, description: DeviceDescription) -> None:
        self.usb_devices.append(description)
        self.source.add(description, emit=False)

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
        stack = self._stack
        self.id_card = await asyncio.to_thread(self._new_id_card)
        stack.callback(self._stop_id_card)
        self._id_card_description = id_card_description(self.id_card.device_path)
        self._attach(self._id_card_description)

        self.keypad = await stack.enter_async_context(CallerKeypadSimulator(transport="pty"))
        self._attach(keypad_description(self.keypad.address))

        self.camera = await asyncio.to_thread(DocumentCameraSimulator(width=1280, height=960).start)
        stack.callback(self.camera.stop)
        self._attach(camera_description(self.camera.device_path))

        self.pad = await stack.enter_async_context(EvaluationPadSimulator(transport="tcp"))
        self.printer = await stack.enter_async_context(EscPosPrinterSimulator(transport="tcp"))
        self.led = await stack.enter_async_context(LedScreenSimulator(transport="tcp"))
        self.network_devices = tuple(
            NetworkDeviceConfig(profile=profile, address=address, device_id=device_id)
            for (profile, device_id), address in (
                (PAD_DEVICE, self.pad.address),
                (PRINTER_DEVICE, self.printer.address),
                (LED_DEVICE, self.led.address),
            )
        )
        await self._start_pcsc()
        log.info("simulated hardware: %d devices", self.count)

    async def _start_pcsc(self) -> None:
        why_not = environment_ok() if self._want_pcsc is None else None
        if self._want_pcsc is False or why_not is not None:
            log.info("no simulated social-security card: %s", why_not or "turned off")
            return
        stack = PcscStack(start_timeout=PCSC_START_TIMEOUT_S)
        try:
            async with asyncio.timeout(PCSC_START_TIMEOUT_S + 2):
                await asyncio.to_thread(stack.start)
        except (PcscUnavailable, OSError, TimeoutError) as exc:
            log.warning("no simulated social-security card: pcscd/vpcd did not start: %s", exc)
            await asyncio.to_thread(stack.stop)
            return
        self.pcsc = stack
        self._stack.callback(stack.stop)
        card = SocialSecurityCardSimulator(
            port=stack.vpcd_port, connect_timeout=CARD_CONNECT_TIMEOUT_S
        )
        try:
            async with asyncio.timeout(CARD_CONNECT_TIMEOUT_S + 2):
                await asyncio.to_thread(card.start)
        except (ConnectionError, OSError, TimeoutError) as exc:
            log.warning("simulated social-security reader without a card: %s", exc)
        else:
            self.ssc_card = card
            self._stack.callback(card.stop)
        self._attach(ssc_reader_description(stack.reader_name))

    # ---- hot-plug ----------------------------------------------------------------

    async def unplug(self) -> bool:
        """Pull the ID-card reader out: its pty closes and a ``remove`` event follows."""
        simulator, description = self.id_card, self._id_card_description
        if simulator is None or description is None:
            return False
        log.info("simulated unplug of the ID-card reader")
        self.id_card = None
        await asyncio.to_thread(simulator.unplug)
        self.source.remove(description)
        await asyncio.to_thread(simulator.stop)
        return True

    async def replug(self) -> bool:
        """Plug the ID-card reader back in (a new pty, same serial number, so same id)."""
        if self.id_card is not None:
            return False
        log.info("simulated replug of the ID-card reader")
        self.id_card = await asyncio.to_thread(self._new_id_card)
        self._id_card_description = id_card_description(self.id_card.device_path)
        self.source.add(self._id_card_description)
        return True

    @staticmethod
    def _new_id_card() -> IdCardSimulator:
        simulator = IdCardSimulator().start()
        simulator.place_card(make_card())
        return simulator

    def _stop_id_card(self) -> None:
        if self.id_card is not None:
            with contextlib.suppress(OSError):
                self.id_card.stop()
