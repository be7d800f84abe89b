"""SAM_A frames over the USB module 0400:C35A's bulk endpoints.

``UsbSamTransport`` has the serial ``SamTransport``'s interface, so ``SamIdReader`` runs
unchanged on either; it splits requests across endpoints 02/06, reassembles replies from
81/85 and maps pipe failures to the device error tree. ``BulkPipe`` is the part that
touches the bus: ``LibUsbPipe`` (pyusb/libusb-1.0) for ``/dev/bus/usb/BBB/DDD``, or a
simulator registered under ``sim-usb:NAME``. See docs/devices/id-card-reader.md.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

from edge_agent.devices.base import (
    DeviceTimeout,
    DeviceUnavailable,
    ProtocolError,
    UsbFacts,
)
from edge_agent.devices.id_card_reader.frame import PREAMBLE, FrameDecoder, Response, parse_response

__all__ = [
    "EP_BODY_IN",
    "EP_BODY_OUT",
    "EP_HEADER_IN",
    "EP_HEADER_OUT",
    "SAM_USB_ID",
    "SIM_PREFIX",
    "BulkPipe",
    "LibUsbPipe",
    "UsbPipeError",
    "UsbPipeGone",
    "UsbPipeTimeout",
    "UsbSamTransport",
    "is_usb_address",
    "open_pipe",
    "register_simulated_pipe",
]

_log = logging.getLogger(__name__)

SAM_USB_ID: Final = (0x0400, 0xC35A)
EP_HEADER_OUT: Final = 0x02
EP_BODY_OUT: Final = 0x06
EP_HEADER_IN: Final = 0x81
EP_BODY_IN: Final = 0x85
HEADER_SIZE: Final = len(PREAMBLE) + 2
MAX_REPLY_BODY: Final = 4096  # 30 10 with a fingerprint is 2.3 kB
SIM_PREFIX: Final = "sim-usb:"
USB_NODE_PREFIX: Final = "/dev/bus/usb/"
_DRAIN_MS: Final = 1
_DRAIN_READS: Final = 64


class UsbPipeError(Exception):
    """A bulk transfer failed (stall, I/O error, no libusb)."""


class UsbPipeTimeout(UsbPipeError):
    """A bulk transfer did not complete within its timeout."""


class UsbPipeGone(UsbPipeError):
    """The device is not (or no longer) on the bus."""


class BulkPipe(Protocol):
    """One claimed USB device: bulk transfers by endpoint address (blocking)."""

    def write(self, endpoint: int, data: bytes, *, timeout_ms: int) -> None:
        """Write all of ``data`` to bulk OUT ``endpoint``."""

    def read(self, endpoint: int, size: int, *, timeout_ms: int) -> bytes:
        """Read at most ``size`` bytes (one transfer) from bulk IN ``endpoint``."""

    def close(self) -> None:
        """Release the device; safe twice."""


PipeOpener = Callable[[], BulkPipe]
_SIMULATED: dict[str, PipeOpener] = {}
_SIMULATED_LOCK = threading.Lock()


def register_simulated_pipe(name: str, opener: PipeOpener | None) -> str:
    """Make ``sim-usb:NAME`` open ``opener()`` (None removes it); returns the address."""
    with _SIMULATED_LOCK:
        if opener is None:
            _SIMULATED.pop(name, None)
        else:
            _SIMULATED[name] = opener
    return SIM_PREFIX + name


def is_usb_address(address: str) -> bool:
    """True for addresses the USB transport serves (a usbfs node or a simulator)."""
    return address.startswith((USB_NODE_PREFIX, SIM_PREFIX))


def open_pipe(address: str, usb: UsbFacts | None) -> BulkPipe:
    """Open the pipe at ``address`` (blocking); ``UsbPipeGone`` if there is none."""
    if address.startswith(SIM_PREFIX):
        with _SIMULATED_LOCK:
            opener = _SIMULATED.get(address.removeprefix(SIM_PREFIX))
        if opener is None:
            raise UsbPipeGone(f"no simulated USB module {address!r}")
        return opener()
    return LibUsbPipe.open(address, usb)


# ---------------------------------------------------------------- libusb (thin)


def _node_numbers(address: str) -> tuple[int, int] | None:
    parts = address.removeprefix(USB_NODE_PREFIX).split("/")
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


class LibUsbPipe:
    """The module through pyusb/libusb-1.0: claim interface 0, one transfer per call."""

    def __init__(self, device: Any) -> None:
        self._device: Any = device

    @classmethod
    def open(cls, address: str, facts: UsbFacts | None) -> LibUsbPipe:
        """Find 0400:C35A at ``address`` (``/dev/bus/usb/BBB/DDD``) and claim it."""
        import usb.core  # type: ignore[import-untyped]
        import usb.util  # type: ignore[import-untyped]

        numbers = _node_numbers(address)
        if facts is not None and facts.bus is not None and facts.device is not None:
            numbers = (facts.bus, facts.device)

        def ours(device: Any) -> bool:
            if (device.idVendor, device.idProduct) != SAM_USB_ID:
                return False
            return numbers is None or (device.bus, device.address) == numbers

        try:
            device = usb.core.find(custom_match=ours)
            if device is None:
                raise UsbPipeGone(f"no USB SAM module 0400:c35a at {address}")
            try:
                if device.is_kernel_driver_active(0):
                    device.detach_kernel_driver(0)
            except (NotImplementedError, usb.core.USBError):
                pass  # no kernel driver binds this module; some platforms cannot say
            try:
                device.get_active_configuration()
            except usb.core.USBError:
                device.set_configuration()
            usb.util.claim_interface(device, 0)
        except usb.core.NoBackendError as exc:
            raise UsbPipeError("libusb-1.0 is missing (apt-get install libusb-1.0-0)") from exc
        except usb.core.USBError as exc:
            raise _translate(exc) from exc
        return cls(device)

    def write(self, endpoint: int, data: bytes, *, timeout_ms: int) -> None:
        """One bulk OUT transfer."""
        import usb.core

        try:
            written = int(self._device.write(endpoint, data, timeout=max(1, timeout_ms)))
        except usb.core.USBError as exc:
            raise _translate(exc) from exc
        if written != len(data):
            raise UsbPipeError(f"short write to 0x{endpoint:02x}: {written} of {len(data)}")

    def read(self, endpoint: int, size: int, *, timeout_ms: int) -> bytes:
        """One bulk IN transfer of at most ``size`` bytes."""
        import usb.core

        try:
            return bytes(self._device.read(endpoint, size, timeout=max(1, timeout_ms)))
        except usb.core.USBError as exc:
            raise _translate(exc) from exc

    def close(self) -> None:
        """Release interface 0 and libusb's handle; safe twice."""
        import usb.core
        import usb.util

        device, self._device = self._device, None
        if device is None:
            return
        try:
            usb.util.release_interface(device, 0)
        except usb.core.USBError as exc:
            _log.debug("releasing the USB SAM module: %s", exc)
        usb.util.dispose_resources(device)


def _translate(exc: Any) -> UsbPipeError:
    import usb.core

    if isinstance(exc, usb.core.USBTimeoutError):
        return UsbPipeTimeout(str(exc))
    if getattr(exc, "errno", None) == errno.ENODEV or getattr(exc, "backend_error_code", 0) == -4:
        return UsbPipeGone(str(exc))  # LIBUSB_ERROR_NO_DEVICE: unplugged
    return UsbPipeError(str(exc))


# ---------------------------------------------------------------- framing over the split


class UsbSamTransport:
    """SAM frames over the endpoint split; ``SamTransport``'s interface.

    Not re-entrant: the driver serialises transactions with its own lock.
    """

    def __init__(
        self, address: str, *, usb: UsbFacts | None = None, device_id: str | None = None
    ) -> None:
        self.port = address
        self.usb = usb
        self.device_id = device_id
        self.decoder = FrameDecoder()  # noise/stale byte counter, as on the serial link
        self.stale_bytes = 0
        self._pipe: BulkPipe | None = None
        self._gone: str | None = None
        self._worker: asyncio.Future[Response] | None = None

    @property
    def is_open(self) -> bool:
        """True while the module is claimed and has not vanished."""
        return self._pipe is not None and self._gone is None

    async def open(self, *, within: float) -> None:
        """Find and claim the module; ``DeviceUnavailable`` if it cannot be."""
        self.decoder = FrameDecoder()
        try:
            async with asyncio.timeout(within):
                self._pipe = await asyncio.to_thread(open_pipe, self.port, self.usb)
        except TimeoutError as exc:
            raise DeviceUnavailable(
                f"opening USB module {self.port} took longer than {within}s",
                device_id=self.device_id,
            ) from exc
        except (UsbPipeError, OSError, ValueError) as exc:
            raise DeviceUnavailable(
                f"cannot open USB module {self.port}: {exc}", device_id=self.device_id
            ) from exc
        self._gone = None

    async def close(self, *, within: float = 2.0) -> None:
        """Release the module; safe to call twice and after it vanished."""
        pipe, self._pipe = self._pipe, None
        if pipe is None:
            return
        try:
            async with asyncio.timeout(within):
                await asyncio.to_thread(pipe.close)
        except (TimeoutError, UsbPipeError, OSError) as exc:
            _log.warning("USB module %s did not close cleanly: %s", self.port, exc)

    async def transact(self, request: bytes, *, within: float) -> Response:
        """Send ``request`` and return the reply frame within ``within`` seconds."""
        pipe = self._pipe
        if pipe is None:
            raise DeviceUnavailable(f"{self.port} is not open", device_id=self.device_id)
        if self._gone is not None:
            raise DeviceUnavailable(f"USB module vanished ({self._gone})", device_id=self.device_id)
        if self._worker is not None and not self._worker.done():
            raise DeviceTimeout(
                f"an earlier transfer on {self.port} is still stuck", device_id=self.device_id
            )
        deadline = time.monotonic() + within
        worker = asyncio.ensure_future(asyncio.to_thread(self._exchange, pipe, request, deadline))
        self._worker = worker
        try:
            # the pipe calls are bounded by the deadline; the margin covers the thread hop
            async with asyncio.timeout(within + 1.0):
                return await asyncio.shield(worker)
        except TimeoutError as exc:
            raise DeviceTimeout(
                f"no answer from {self.port} within {within}s", device_id=self.device_id
            ) from exc

    # ---- blocking part, in a worker thread

    def _exchange(self, pipe: BulkPipe, request: bytes, deadline: float) -> Response:
        if len(request) <= HEADER_SIZE or not request.startswith(PREAMBLE):
            raise ValueError("not a SAM request frame")
        self._drain(pipe)
        self._call(pipe.write, EP_HEADER_OUT, request[:HEADER_SIZE], deadline=deadline)
        self._call(pipe.write, EP_BODY_OUT, request[HEADER_SIZE:], deadline=deadline)
        header = self._call(pipe.read, EP_HEADER_IN, 64, deadline=deadline, waiting=True)
        assert isinstance(header, bytes)
        if len(header) < HEADER_SIZE or not header.startswith(PREAMBLE):
            self.decoder.skipped += len(header)
            raise ProtocolError(
                f"reply header on 0x81 is not a SAM frame header ({header[:8].hex(' ')})",
                device_id=self.device_id,
            )
        length = int.from_bytes(header[len(PREAMBLE) : HEADER_SIZE], "big")
        if not 4 <= length <= MAX_REPLY_BODY:
            raise ProtocolError(f"reply declares {length} body bytes", device_id=self.device_id)
        body = bytearray(header[HEADER_SIZE:])  # a module may send all in one packet
        while len(body) < length:
            try:
                chunk = self._call(
                    pipe.read, EP_BODY_IN, length - len(body), deadline=deadline, waiting=True
                )
            except DeviceTimeout as exc:
                raise ProtocolError(
                    f"truncated frame: {HEADER_SIZE + len(body)} of {HEADER_SIZE + length} "
                    "bytes arrived, then silence",
                    device_id=self.device_id,
                ) from exc
            assert isinstance(chunk, bytes)
            body += chunk
        if len(body) > length:
            raise ProtocolError(
                f"reply body is {len(body)} bytes, its header says {length}",
                device_id=self.device_id,
            )
        return parse_response(header[:HEADER_SIZE] + bytes(body))

    def _call(
        self,
        method: Callable[..., object],
        *args: object,
        deadline: float,
        waiting: bool = False,
    ) -> object:
        timeout_ms = int((deadline - time.monotonic()) * 1000)
        if timeout_ms <= 0:
            raise DeviceTimeout(f"no answer from {self.port} in time", device_id=self.device_id)
        try:
            return method(*args, timeout_ms=timeout_ms)
        except UsbPipeTimeout as exc:
            what = "no answer" if waiting else "the module did not take the request"
            raise DeviceTimeout(
                f"{what} from {self.port} in time", device_id=self.device_id
            ) from exc
        except UsbPipeGone as exc:
            self._gone = str(exc) or "unplugged"
            raise DeviceUnavailable(
                f"USB module vanished mid-exchange ({self.port})", device_id=self.device_id
            ) from exc
        except UsbPipeError as exc:
            raise ProtocolError(f"USB transfer failed: {exc}", device_id=self.device_id) from exc

    def _drain(self, pipe: BulkPipe) -> None:
        """Read and drop a late reply to an earlier, timed-out request."""
        for endpoint in (EP_HEADER_IN, EP_BODY_IN):
            for _ in range(_DRAIN_READS):
                try:
                    stale = pipe.read(endpoint, 64, timeout_ms=_DRAIN_MS)
                except UsbPipeTimeout:
                    break
                except UsbPipeGone as exc:
                    self._gone = str(exc) or "unplugged"
                    raise DeviceUnavailable(
                        f"USB module vanished ({self.port})", device_id=self.device_id
                    ) from exc
                except UsbPipeError:
                    break
                if not stale:
                    break
                self.stale_bytes += len(stale)
                self.decoder.skipped += len(stale)
                _log.debug("dropped %d stale bytes from 0x%02x", len(stale), endpoint)
