"""Request/response exchange with a SAM_A module over a serial port (asyncio).

One asyncio protocol feeds every received byte into a ``FrameDecoder``; ``transact``
drops stale bytes, writes a request and waits, with a deadline, for the next complete
frame. Silence becomes ``DeviceTimeout``, a frame cut short at the deadline or a bad
frame ``ProtocolError``, a vanished port ``DeviceUnavailable``; pyserial's exceptions
never leave this module.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import serial
import serial_asyncio_fast

from edge_agent.devices.base import DeviceTimeout, DeviceUnavailable, ProtocolError
from edge_agent.devices.id_card_reader.frame import FrameDecoder, Response, parse_response

__all__ = ["SamTransport"]

_log = logging.getLogger(__name__)


class _Protocol(asyncio.Protocol):
    """Feeds the decoder and wakes the waiting transaction."""

    def __init__(self, decoder: FrameDecoder) -> None:
        self.decoder = decoder
        self.arrived = asyncio.Event()
        self.closed = asyncio.Event()
        self.lost: BaseException | None = None

    def data_received(self, data: bytes) -> None:
        self.decoder.feed(data)
        self.arrived.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("serial port closed")
        self.closed.set()
        self.arrived.set()


class SamTransport:
    """A serial link to one module: ``open``, ``transact``, ``close``.

    Not re-entrant: the driver serialises transactions with its own lock.
    """

    def __init__(self, port: str, *, baudrate: int = 115200, device_id: str | None = None) -> None:
        self.port = port
        self.baudrate = baudrate
        self.device_id = device_id
        self.decoder = FrameDecoder()
        self._transport: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None

    @property
    def is_open(self) -> bool:
        """True while the port is open and has not vanished."""
        return self._protocol is not None and self._protocol.lost is None

    async def open(self, *, within: float) -> None:
        """Open the port 8N1 at ``baudrate``; ``DeviceUnavailable`` if it cannot be."""
        loop = asyncio.get_running_loop()
        self.decoder = FrameDecoder()
        protocol = _Protocol(self.decoder)
        try:
            async with asyncio.timeout(within):
                transport, _ = await serial_asyncio_fast.create_serial_connection(
                    loop,
                    lambda: protocol,
                    self.port,
                    baudrate=self.baudrate,
                    bytesize=serial.EIGHTBITS,
                    parity=serial.PARITY_NONE,
                    stopbits=serial.STOPBITS_ONE,
                )
        except TimeoutError as exc:
            raise DeviceUnavailable(
                f"opening {self.port} took longer than {within}s", device_id=self.device_id
            ) from exc
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DeviceUnavailable(
                f"cannot open {self.port}: {exc}", device_id=self.device_id
            ) from exc
        self._transport, self._protocol = transport, protocol

    async def close(self, *, within: float = 2.0) -> None:
        """Close the port and wait (bounded) until it is released; safe to call twice."""
        transport, protocol = self._transport, self._protocol
        self._transport = None
        if transport is None or protocol is None:
            return
        transport.close()
        try:
            async with asyncio.timeout(within):
                await protocol.closed.wait()
        except TimeoutError:
            _log.warning("serial port %s did not report closed within %.1fs", self.port, within)

    async def set_baudrate(self, baudrate: int) -> None:
        """Switch the open port to ``baudrate`` (kept for later opens of this port)."""
        self.baudrate = baudrate
        transport = self._transport
        if transport is None:
            return
        port: Any = transport.get_extra_info("serial")  # the pyserial Serial
        if port is None:
            raise self._unavailable("serial port closed")
        try:
            port.baudrate = baudrate
        except (serial.SerialException, OSError, ValueError) as exc:
            raise self._unavailable(f"cannot switch to {baudrate} baud") from exc

    def _unavailable(self, what: str) -> DeviceUnavailable:
        lost = self._protocol.lost if self._protocol else None
        detail = f": {lost}" if lost else ""
        return DeviceUnavailable(f"{what} ({self.port}){detail}", device_id=self.device_id)

    async def transact(self, request: bytes, *, within: float) -> Response:
        """Send ``request`` and return the next complete response within ``within`` seconds."""
        protocol, transport = self._protocol, self._transport
        if protocol is None or transport is None:
            raise DeviceUnavailable(f"{self.port} is not open", device_id=self.device_id)
        if protocol.lost is not None:
            raise self._unavailable("serial port vanished")
        stale = self.decoder.clear()
        if stale:
            _log.debug("dropped %d stale bytes from %s before a request", stale, self.port)
        protocol.arrived.clear()
        try:
            transport.write(request)
        except (serial.SerialException, OSError) as exc:
            raise self._unavailable("serial write failed") from exc
        try:
            async with asyncio.timeout(within):
                while True:
                    frame = self.decoder.next_frame()
                    if frame is not None:
                        return parse_response(frame)
                    if protocol.lost is not None:
                        raise self._unavailable("serial port vanished mid-exchange")
                    protocol.arrived.clear()
                    await protocol.arrived.wait()
        except TimeoutError as exc:
            if self.decoder.partial:
                got = self.decoder.pending
                self.decoder.clear()
                raise ProtocolError(
                    f"truncated frame: {got} bytes arrived, then silence for {within}s",
                    device_id=self.device_id,
                ) from exc
            raise DeviceTimeout(
                f"no answer from {self.port} within {within}s", device_id=self.device_id
            ) from exc
