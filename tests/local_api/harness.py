"""A real outlet for local-API tests: simulators, drivers, outbox, queue, uvicorn.

Built like the daemon builds it: a ``DeviceManager`` whose ID-card reader arrives
through a ``ControlledSource`` (this machine has no USB bus or udevd, so the test plays
udev) and whose pad, ticket printer and LED bus are network devices from config, each
pointing at the real simulator speaking the real bytes (pty for the ID card, TCP for
the rest). The outbox and queue are real SQLite files in the test's tmp dir; the API
is served by uvicorn on a free loopback port and called over real HTTP with httpx and
over a real WebSocket with the ``websockets`` client (``events_socket``).

Optional devices: ``camera=`` a ``DocumentCameraSimulator`` (a video file OpenCV opens
like ``/dev/videoN``, announced as a ``video4linux`` node) and ``pcsc=`` a running
``PcscStack`` (real pcscd + vpcd, announced as a USB CCID reader whose address is the
PC/SC reader name).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol

from edge_agent.counters import AgentCounters
from edge_agent.devices.caller_keypad.simulator import CallerKeypadSimulator
from edge_agent.devices.document_camera.simulator import DocumentCameraSimulator
from edge_agent.devices.evaluation_pad.simulator import EvaluationPadSimulator
from edge_agent.devices.id_card_reader.simulator import IdCardSimulator
from edge_agent.devices.led_screen.simulator import LedScreenSimulator
from edge_agent.devices.social_security_card_reader.vpcd import PcscStack
from edge_agent.devices.ticket_printer.simulator import EscPosPrinterSimulator
from edge_agent.discovery import (
    ControlledSource,
    DeviceDescription,
    DeviceManager,
    NetworkDeviceConfig,
)
from edge_agent.fleet_config.effective import LiveSettings
from edge_agent.local_api import WS_SUBPROTOCOL, AppRegistry, LocalApiOptions, serve_local_api
from edge_agent.outbox import Outbox
from edge_agent.profiles import ProfileSet
from edge_agent.profiles.models import MatchRule, NetworkRule, Profile, UsbRule
from edge_agent.queueing import BusinessType, QueueEngine, WindowConfig
from edge_agent.runtime import AgentRuntime

ORIGIN = "https://clerk.example"
FOREIGN = "https://evil.example"
OUTLET = "outlet-test-1"
READER = "test-sam.sn-10c4ea60-SIMREADER1"
CAMERA = "test-camera.sn-2b161001-SIMCAM1"
SSC_READER = "test-ssc.sn-072f90cc-SIMSSC1"
CAMERA_SIZE = (640, 480)
TYPES = [
    BusinessType(code="social", prefix="A", name="社保医保"),
    BusinessType(code="tax", prefix="B", name="税务"),
]

PROFILES = ProfileSet(
    profiles=(
        Profile(
            id="test-sam",
            name="SAM reader (test)",
            kind="id_card_reader",
            driver="sam_id_reader",
            match=(
                MatchRule(
                    usb=UsbRule(
                        subsystem="tty", vendor_id="10c4", product_id="ea60", product=("*SAM*",)
                    )
                ),
            ),
            settings={"command_timeout": 0.5, "read_timeout": 1.5},
        ),
        Profile(
            id="test-pad",
            name="pad (test)",
            kind="evaluation_pad",
            driver="haochaping_pad",
            match=(MatchRule(network=NetworkRule()),),
            settings={"ack_timeout": 0.5, "walkaway_grace": 3},
        ),
        Profile(
            id="test-printer",
            name="printer (test)",
            kind="ticket_printer",
            driver="escpos_printer",
            match=(MatchRule(network=NetworkRule()),),
            settings={"status_timeout": 0.5, "job_timeout": 3},
        ),
        Profile(
            id="test-led",
            name="LED bus (test)",
            kind="led_screen",
            driver="led_window_screen",
            match=(MatchRule(network=NetworkRule()),),
            settings={"reply_timeout": 0.3},
        ),
        Profile(
            id="test-camera",
            name="document camera (test)",
            kind="document_camera",
            driver="uvc_document_camera",
            match=(MatchRule(usb=UsbRule(subsystem="video4linux", product=("*Document*",))),),
            settings={
                "width": CAMERA_SIZE[0],
                "height": CAMERA_SIZE[1],
                "jpeg_quality": 80,
                "warmup_frames": 0,
            },
        ),
        Profile(
            id="test-ssc",
            name="social-security reader (test)",
            kind="social_security_card_reader",
            driver="pcsc_social_security",
            match=(MatchRule(usb=UsbRule(subsystem="usb", interface_class="0b")),),
            settings={"card_timeout": 5.0},
        ),
        Profile(
            id="test-keypad",
            name="caller keypad bus (test)",
            kind="caller_keypad",
            driver="caller_keypad",
            match=(MatchRule(network=NetworkRule()),),
            settings={"reply_timeout": 0.3, "probe_address": 3},
        ),
    )
)
KEYPAD_BUS = "keypad-bus"


def reader_description(path: str) -> DeviceDescription:
    """What udev would report for the SAM reader's USB-serial bridge."""
    return DeviceDescription(
        subsystem="tty",
        device_node=path,
        sys_path="/sys/devices/test/sam-reader",
        vendor_id="10c4",
        product_id="ea60",
        serial="SIMREADER1",
        product="SAM ID Card Reader",
    )


def camera_description(path: str) -> DeviceDescription:
    """What udev would report for a UVC document camera's capture node."""
    return DeviceDescription(
        subsystem="video4linux",
        device_node=path,
        sys_path="/sys/devices/test/doc-camera",
        vendor_id="2b16",
        product_id="1001",
        serial="SIMCAM1",
        product="Document Camera",
    )


def ssc_description(reader_name: str) -> DeviceDescription:
    """What udev would report for a USB CCID reader; pcscd's reader name is its address."""
    return DeviceDescription(
        subsystem="usb",
        sys_path="/sys/devices/test/ccid-reader",
        vendor_id="072f",
        product_id="90cc",
        serial="SIMSSC1",
        product="CCID Reader",
        interface_classes=("0b",),
        address=reader_name,
    )


@dataclass
class Outlet:
    """The parts a test drives: the runtime, the simulators and an HTTP client."""

    runtime: AgentRuntime
    apps: AppRegistry
    token: str
    port: int
    client: httpx.AsyncClient
    source: ControlledSource
    id_card: IdCardSimulator
    pad: EvaluationPadSimulator
    printer: EscPosPrinterSimulator
    led: LedScreenSimulator
    keypad: CallerKeypadSimulator | None = None
    serving: LocalApiServing | None = None

    async def stop_api(self) -> None:
        """Close the local API's server (as an agent restart does); the devices stay."""
        assert self.serving is not None
        await self.serving.stop()

    async def start_api(self) -> None:
        """Serve the local API again on the same port, as the restarted agent does."""
        assert self.serving is not None
        await self.serving.start(self.port)

    @property
    def auth(self) -> dict[str, str]:
        """The ``Authorization`` header of the registered test app."""
        return {"Authorization": f"Bearer {self.token}"}

    def events_socket(self, *, origin: str | None = ORIGIN, token: str | None = None) -> connect:
        """A real WebSocket client for ``/v1/events`` (``token=""`` offers no bearer)."""
        token = self.token if token is None else token
        offered = [WS_SUBPROTOCOL, f"bearer.{token}"] if token else [WS_SUBPROTOCOL]
        return connect(
            f"ws://127.0.0.1:{self.port}/v1/events",
            origin=Origin(origin) if origin is not None else None,
            subprotocols=[Subprotocol(p) for p in offered],
            proxy=None,
            open_timeout=5,
            close_timeout=2,
        )


class LocalApiServing:
    """The local API's uvicorn task, which a test can stop and start again."""

    def __init__(self, start: Callable[[int], Awaitable[tuple[asyncio.Task[None], int]]]) -> None:
        self._start = start
        self._task: asyncio.Task[None] | None = None

    async def start(self, port: int) -> int:
        self._task, bound = await self._start(port)
        return bound

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=10)
            self._task = None


@contextlib.asynccontextmanager
async def outlet(
    tmp_path: Path,
    *,
    quota_bytes: int = 64 * 1024 * 1024,
    options: LocalApiOptions | None = None,
    camera: DocumentCameraSimulator | None = None,
    pcsc: PcscStack | None = None,
    keypad: bool = False,
    windows: Sequence[WindowConfig] | None = None,
    counters: AgentCounters | None = None,
    live: LiveSettings | None = None,
    queue_clock: Callable[[], datetime] | None = None,
    appointment_grace: timedelta = timedelta(minutes=15),
) -> AsyncIterator[Outlet]:
    """Start everything; yields once every device is ready and the API listens.

    ``queue_clock`` is the queue's clock (tests of appointment expiry set the hour).
    """
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)  # a second outlet() on the same tmp_path is a restart
    apps = AppRegistry(data)
    if apps.get("clerk") is not None:  # a restart: the app is registered already
        apps.remove("clerk")
    _, token = apps.add("clerk", origins=[ORIGIN])
    id_card = IdCardSimulator().start()
    try:
        async with (
            EvaluationPadSimulator(transport="tcp") as pad,
            EscPosPrinterSimulator(transport="tcp") as printer,
            LedScreenSimulator(addresses=range(1, 9), transport="tcp") as led,
            CallerKeypadSimulator(addresses=(3, 4, 5), transport="tcp") as keypads,
        ):
            described = [reader_description(id_card.device_path)]
            wanted = [READER, "pad-3", "printer-1", "led-bus"]
            if camera is not None:
                described.append(camera_description(camera.device_path))
                wanted.append(CAMERA)
            if pcsc is not None:
                described.append(ssc_description(pcsc.reader_name))
                wanted.append(SSC_READER)
            source = ControlledSource(described)
            network = [
                NetworkDeviceConfig(profile="test-pad", address=pad.address, device_id="pad-3"),
                NetworkDeviceConfig(
                    profile="test-printer", address=printer.address, device_id="printer-1"
                ),
                NetworkDeviceConfig(profile="test-led", address=led.address, device_id="led-bus"),
            ]
            if keypad:
                network.append(
                    NetworkDeviceConfig(
                        profile="test-keypad", address=keypads.address, device_id=KEYPAD_BUS
                    )
                )
                wanted.append(KEYPAD_BUS)
            async with (
                DeviceManager(
                    PROFILES,
                    source,
                    network_devices=network,
                    debounce_s=0.02,
                    reconcile_interval_s=3600,
                    retry_base_s=0.2,
                    retry_cap_s=0.5,
                ) as devices,
                Outbox(
                    data / "outbox.db", key_path=data / "outbox.key", quota_bytes=quota_bytes
                ) as outbox,
                QueueEngine(
                    data, TYPES, clock=queue_clock, appointment_grace=appointment_grace
                ) as queue,
            ):
                if windows is None:
                    await queue.configure_window("3", ["social"])
                    await queue.configure_window("5", ["social", "tax"])
                else:  # as the agent applies [[queue_windows]] at start
                    await queue.apply_windows(windows)
                for device_id in wanted:
                    await devices.wait_for_state(device_id, "ready", timeout_s=10)
                runtime = AgentRuntime(
                    outlet_id=OUTLET,
                    devices=devices,
                    outbox=outbox,
                    queue=queue,
                    windows={w.window: w for w in windows or ()},
                    live=live,
                )

                async def start(port: int) -> tuple[asyncio.Task[None], int]:
                    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
                    task = asyncio.create_task(
                        serve_local_api(
                            runtime,
                            port=port,
                            apps=apps,
                            options=options,
                            announcements_dir=tmp_path / "voice",
                            counters=counters,
                            on_started=started.set_result,
                        ),
                        name="test-local-api",
                    )
                    waited: list[asyncio.Future[Any]] = [task, started]
                    await asyncio.wait(waited, timeout=10, return_when=asyncio.FIRST_COMPLETED)
                    if started.done():
                        return task, started.result()
                    if task.done():
                        await task  # its error: e.g. the port could not be bound again
                    task.cancel()
                    raise TimeoutError("the local API did not start within 10 s")

                serving = LocalApiServing(start)
                try:
                    port = await serving.start(0)
                    async with httpx.AsyncClient(
                        base_url=f"http://127.0.0.1:{port}", timeout=30
                    ) as client:
                        yield Outlet(
                            runtime=runtime,
                            apps=apps,
                            token=token,
                            port=port,
                            client=client,
                            source=source,
                            id_card=id_card,
                            pad=pad,
                            printer=printer,
                            led=led,
                            keypad=keypads if keypad else None,
                            serving=serving,
                        )
                finally:
                    await serving.stop()
    finally:
        id_card.stop()


async def wait_for_event(
    ws: ClientConnection, name: str, *, timeout_s: float = 5.0
) -> dict[str, Any]:
    """Skip messages on a real WebSocket until the event called ``name``."""
    async with asyncio.timeout(timeout_s):
        while True:
            message: dict[str, Any] = json.loads(await ws.recv())
            if message.get("name") == name:
                return message
