"""The ID-card simulator's SAM module behind the 0400:C35A USB endpoint split.

A subclass of ``IdCardSimulator`` (same cards, answers and faults) that is a
``BulkPipe``: headers on bulk 02/81, bodies on 06/85, packets of at most ``max_packet``
bytes; bytes on the wrong endpoint stall it (``UsbPipeError``). The driver opens it as
``sim-usb:NAME``. See docs/devices/id-card-reader.md.

    with UsbIdCardSimulator() as sim:
        sim.place_card(make_card(CardType.RESIDENT))
        driver = SamIdReader(DeviceIdentity(..., address=sim.address))
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any, Final, Self

from edge_agent.devices.id_card_reader.frame import (
    PREAMBLE,
    FrameChecksumError,
    FrameDecoder,
    FrameLengthError,
    Sw3,
    encode_response,
)
from edge_agent.devices.id_card_reader.simulator import IdCardSimulator
from edge_agent.devices.id_card_reader.usb import (
    EP_BODY_IN,
    EP_BODY_OUT,
    EP_HEADER_IN,
    EP_HEADER_OUT,
    BulkPipe,
    UsbPipeError,
    UsbPipeGone,
    UsbPipeTimeout,
    register_simulated_pipe,
)

__all__ = ["UsbIdCardSimulator"]

HEADER: Final = len(PREAMBLE) + 2
_names = itertools.count(1)


class _SimPipe:
    """One open handle on the simulated module (what ``open_pipe`` returns)."""

    def __init__(self, sim: UsbIdCardSimulator) -> None:
        self._sim: UsbIdCardSimulator | None = sim

    def _module(self) -> UsbIdCardSimulator:
        if self._sim is None:
            raise UsbPipeError("handle closed")
        return self._sim

    def write(self, endpoint: int, data: bytes, *, timeout_ms: int) -> None:
        self._module().usb_write(endpoint, data)

    def read(self, endpoint: int, size: int, *, timeout_ms: int) -> bytes:
        return self._module().usb_read(endpoint, size, timeout_ms=timeout_ms)

    def close(self) -> None:
        self._sim = None


class UsbIdCardSimulator(IdCardSimulator):
    """A SAM module on simulated bulk endpoints 02/06 → 81/85; see the module docstring."""

    def __init__(self, *, name: str | None = None, max_packet: int = 64, **options: Any) -> None:
        super().__init__(**options)
        self.name = name or f"sam-{next(_names)}"
        self.max_packet = max_packet
        self.transfers: list[tuple[str, int, int]] = []
        self.opens = 0
        self._cond = threading.Condition()
        self._header: bytes | None = None
        self._reply_header = bytearray()
        self._reply_body = bytearray()
        self._started = False

    # ---- lifecycle: no pty, a registered pipe instead

    @property
    def address(self) -> str:
        """The driver's address for this module (``sim-usb:NAME``)."""
        return f"sim-usb:{self.name}"

    @property
    def device_path(self) -> str:
        """Same as ``address`` (what the serial simulator calls its device path)."""
        return self.address

    def start(self) -> Self:
        """Plug the module in: ``address`` opens it from now on."""
        if self._started:
            raise RuntimeError("simulator already started")
        self._started = True
        register_simulated_pipe(self.name, self._open)
        return self

    def stop(self, *, timeout: float = 2.0) -> None:
        """Unregister; safe to call twice."""
        register_simulated_pipe(self.name, None)
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def unplug(self) -> None:
        """Pull the module off the bus: open handles fail with ``UsbPipeGone``."""
        self._unplugged.set()
        self.stop()

    def _open(self) -> BulkPipe:
        if self._unplugged.is_set():
            raise UsbPipeGone(f"{self.address} is unplugged")
        self.opens += 1
        return _SimPipe(self)

    # ---- the endpoints (called from the driver's worker thread)

    def usb_write(self, endpoint: int, data: bytes) -> None:
        """A bulk OUT transfer from the host."""
        if self._unplugged.is_set():
            raise UsbPipeGone("device gone")
        with self._cond:
            self.transfers.append(("out", endpoint, len(data)))
            if endpoint == EP_HEADER_OUT:
                if len(data) != HEADER or not data.startswith(PREAMBLE):
                    raise UsbPipeError("endpoint 0x02 stalled: not a 7-byte frame header")
                self._header = bytes(data)
                return
            if endpoint != EP_BODY_OUT:
                raise UsbPipeError(f"no bulk OUT endpoint 0x{endpoint:02x}")
            header, self._header = self._header, None
            if header is None:
                raise UsbPipeError("endpoint 0x06 stalled: body without a header on 0x02")
        self._request(header + bytes(data))

    def usb_read(self, endpoint: int, size: int, *, timeout_ms: int) -> bytes:
        """A bulk IN transfer: at most ``size`` bytes, one packet of ``max_packet``."""
        if endpoint not in (EP_HEADER_IN, EP_BODY_IN):
            raise UsbPipeError(f"no bulk IN endpoint 0x{endpoint:02x}")
        buffer = self._reply_header if endpoint == EP_HEADER_IN else self._reply_body
        deadline = time.monotonic() + timeout_ms / 1000
        with self._cond:
            while not buffer:
                if self._unplugged.is_set():
                    raise UsbPipeGone("device gone")
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    raise UsbPipeTimeout(f"bulk IN 0x{endpoint:02x} timed out")
                self._cond.wait(left)
            if self._unplugged.is_set():
                raise UsbPipeGone("device gone")
            count = min(size, self.max_packet, len(buffer))
            chunk = bytes(buffer[:count])
            del buffer[:count]
            self.transfers.append(("in", endpoint, count))
            return chunk

    # ---- the module

    def _request(self, frame: bytes) -> None:
        decoder = FrameDecoder(max_body=64, verify=self.strict)
        decoder.feed(frame)
        try:
            whole = decoder.next_frame()
        except FrameLengthError:
            whole = None
        except FrameChecksumError:  # strict mode only
            self._send(0, None, encode_response(Sw3.BAD_CHECKSUM))
            return
        if whole is None or decoder.pending:
            self._send(0, None, encode_response(Sw3.BAD_LENGTH))
            return
        self._handle(0, whole)

    def _deliver(self, master: int, response: bytes) -> None:
        """Queue the reply: its first 7 bytes for 0x81, the rest for 0x85."""
        if self._unplugged.is_set():
            return
        with self._cond:
            self._reply_header += response[:HEADER]
            self._reply_body += response[HEADER:]
            self._cond.notify_all()
