"""Byte-stream plumbing shared by the framed serial/TCP devices (pad, printer, LED, keypad).

Three pieces, so each device module only describes its own bytes:

* ``StreamLink`` — the driver side: one byte stream to a device, over a serial port (a
  pseudo-terminal in tests) or TCP, with every read and write under a deadline and
  ``serial``/``OSError`` failures turned into ``DeviceUnavailable``/``DeviceTimeout``.
* ``FrameScanner`` — finds frames in a byte buffer and resynchronises after noise: a
  candidate that fails its checks is skipped one byte at a time, and a partial frame is
  abandoned as soon as a later, complete and valid frame shows that it was truncated.
* ``StreamEndpoint`` — the device side for simulators: the same bytes served over a
  pseudo-terminal (``pty.openpty``) or a TCP server on 127.0.0.1.

The module lives under the ``pad_`` prefix only because of file ownership; nothing in it
is specific to the evaluation pad.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pty
import tty
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import serial
import serial_asyncio_fast

from edge_agent.devices.base import DeviceTimeout, DeviceUnavailable

logger = logging.getLogger(__name__)

_READ_CHUNK = 4096
_T = TypeVar("_T")


def split_tcp_address(address: str) -> tuple[str, int] | None:
    """``("host", port)`` for ``tcp://host:port`` or ``host:port``; ``None`` for a device path."""
    rest = address.removeprefix("tcp://")
    if rest.startswith("/") or ":" not in rest:
        return None
    host, _, port = rest.rpartition(":")
    if not port.isdigit():
        return None
    return host.strip("[]"), int(port)


class StreamLink:
    """One open byte stream to a device; serial for a path, TCP for ``host:port``."""

    def __init__(
        self,
        address: str,
        *,
        device_id: str | None = None,
        baudrate: int = 9600,
        connect_timeout: float = 3.0,
        write_timeout: float = 2.0,
    ) -> None:
        self.address = address
        self.device_id = device_id
        self.baudrate = baudrate
        self.connect_timeout = connect_timeout
        self.write_timeout = write_timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def is_open(self) -> bool:
        """Whether ``open`` succeeded and ``close`` has not been called since."""
        return self._writer is not None

    async def open(self) -> None:
        """Connect; ``DeviceUnavailable`` if the port or host cannot be reached in time."""
        tcp = split_tcp_address(self.address)
        try:
            async with asyncio.timeout(self.connect_timeout):
                if tcp is None:
                    self._reader, self._writer = await serial_asyncio_fast.open_serial_connection(
                        url=self.address, baudrate=self.baudrate
                    )
                else:
                    self._reader, self._writer = await asyncio.open_connection(*tcp)
        except TimeoutError as exc:
            raise DeviceUnavailable(
                f"connecting to {self.address} timed out", device_id=self.device_id
            ) from exc
        except (serial.SerialException, OSError) as exc:
            raise DeviceUnavailable(
                f"cannot open {self.address}: {exc}", device_id=self.device_id
            ) from exc

    def _require(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            raise DeviceUnavailable(f"{self.address} is not open", device_id=self.device_id)
        return self._reader, self._writer

    async def write(self, data: bytes) -> None:
        """Send ``data``; ``DeviceTimeout`` if it cannot be flushed within ``write_timeout``."""
        _, writer = self._require()
        try:
            writer.write(data)
            async with asyncio.timeout(self.write_timeout):
                await writer.drain()
        except TimeoutError as exc:
            raise DeviceTimeout(
                f"writing to {self.address} timed out", device_id=self.device_id
            ) from exc
        except (serial.SerialException, OSError) as exc:
            raise DeviceUnavailable(
                f"write to {self.address} failed: {exc}", device_id=self.device_id
            ) from exc

    async def read(self, *, within: float | None) -> bytes:
        """The next bytes that arrive; ``DeviceTimeout`` if none ``within`` seconds
        (``None``: wait as long as it takes)."""
        reader, _ = self._require()
        try:
            async with asyncio.timeout(within):
                data = await reader.read(_READ_CHUNK)
        except TimeoutError as exc:
            raise DeviceTimeout(
                f"{self.address} sent nothing for {within:g} s", device_id=self.device_id
            ) from exc
        except (serial.SerialException, OSError) as exc:
            raise DeviceUnavailable(
                f"read from {self.address} failed: {exc}", device_id=self.device_id
            ) from exc
        if not data:
            raise DeviceUnavailable(f"{self.address} closed the link", device_id=self.device_id)
        return data

    async def drain_input(self) -> None:
        """Throw away bytes already received (stale replies) without waiting for more."""
        reader, _ = self._require()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.01):
                while await reader.read(_READ_CHUNK):
                    pass

    async def close(self) -> None:
        """Close the stream; safe to call twice and after the device vanished."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is None:
            return
        writer.close()
        with contextlib.suppress(OSError, serial.SerialException, TimeoutError):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()


# --- frame scanning ---------------------------------------------------------------


class Incomplete:
    """Parser verdict: the candidate frame needs more bytes."""


class Invalid:
    """Parser verdict: no frame starts here; ``reason`` is a counter key."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


INCOMPLETE = Incomplete()
ParseResult = tuple[_T, int] | Incomplete | Invalid
"""A parser returns ``(frame, end_offset)``, ``INCOMPLETE`` or ``Invalid(reason)``."""


@dataclass(slots=True)
class ScanStats:
    """Counters of what a scanner threw away, for health metrics."""

    frames: int = 0
    garbage_bytes: int = 0
    bad_frames: int = 0
    last_error: str = ""


class FrameScanner(Generic[_T]):
    """Feed bytes in, get whole frames out; noise and broken frames are skipped.

    ``parse(buf, i)`` looks at a candidate starting at ``buf[i]`` (which equals one of the
    ``starts`` bytes). Only frames that pass their checksum are returned, so a false start
    byte inside noise costs nothing but a rescan.
    """

    def __init__(
        self,
        parse: Callable[[bytes, int], ParseResult[_T]],
        *,
        starts: bytes,
        max_buffer: int = 16384,
    ) -> None:
        self._parse = parse
        self._starts = starts
        self._max_buffer = max_buffer
        self._buf = b""
        self.stats = ScanStats()
        self.errors: list[str] = []

    def _next_start(self, buf: bytes, i: int) -> int:
        positions = [p for p in (buf.find(bytes([s]), i) for s in self._starts) if p >= 0]
        return min(positions) if positions else -1

    def _later_frame(self, buf: bytes, after: int) -> int:
        k = self._next_start(buf, after + 1)
        while k >= 0:
            if isinstance(self._parse(buf, k), tuple):
                return k
            k = self._next_start(buf, k + 1)
        return -1

    def feed(self, data: bytes) -> list[_T]:
        """Add received bytes; return every complete valid frame now available."""
        buf = self._buf + data
        frames: list[_T] = []
        i = 0
        while True:
            j = self._next_start(buf, i)
            if j < 0:
                self.stats.garbage_bytes += len(buf) - i
                buf = b""
                break
            self.stats.garbage_bytes += j - i
            verdict = self._parse(buf, j)
            if isinstance(verdict, Invalid):
                self._bad(verdict.reason)
                i = j + 1
                continue
            if isinstance(verdict, Incomplete):
                k = self._later_frame(buf, j)
                if k < 0:
                    buf = buf[j:]
                    break
                self._bad("truncated")
                self.stats.garbage_bytes += k - j - 1
                i = k
                continue
            frame, end = verdict
            frames.append(frame)
            self.stats.frames += 1
            i = end
        if len(buf) > self._max_buffer:
            self._bad("overflow")
            self.stats.garbage_bytes += len(buf)
            buf = b""
        self._buf = buf
        return frames

    def _bad(self, reason: str) -> None:
        self.stats.bad_frames += 1
        self.stats.last_error = reason
        self.errors.append(reason)
        del self.errors[:-32]
        logger.debug("dropped a bad frame: %s", reason)

    def take_errors(self) -> list[str]:
        """Reasons of frames dropped since the last call (bounded), oldest first."""
        errors, self.errors = self.errors, []
        return errors

    def reset(self) -> None:
        """Forget any partial frame (after a timeout, the rest will never come)."""
        self.stats.garbage_bytes += len(self._buf)
        self._buf = b""

    @property
    def partial(self) -> bool:
        """Whether the scanner holds the start of a frame whose rest has not come."""
        return bool(self._buf)


async def read_frames_of(link: StreamLink, scanner: FrameScanner[_T], *, frame_gap: float) -> bytes:
    """The next bytes from ``link`` for ``scanner``, for a driver's read loop.

    While the scanner holds the start of a frame, ``frame_gap`` seconds of silence drop
    it (the rest will never come). With nothing pending the read has no deadline: an
    idle bus wakes the agent for nothing (a deadline per ``frame_gap`` did, issue 17).
    """
    while True:
        try:
            return await link.read(within=frame_gap if scanner.partial else None)
        except DeviceTimeout:
            scanner.reset()


# --- simulator side -----------------------------------------------------------------


class StreamEndpoint:
    """The device end of a byte stream, for simulators: a pty or a TCP listener.

    ``on_bytes`` is called in the event loop with every chunk the driver sent; ``send``
    writes to the driver (to every connected TCP client). Use as an async context manager.
    """

    def __init__(
        self, on_bytes: Callable[[bytes], None], *, transport: str = "pty", port: int = 0
    ) -> None:
        if transport not in ("pty", "tcp"):
            raise ValueError("transport must be 'pty' or 'tcp'")
        self.transport = transport
        self.port = port
        self._on_bytes = on_bytes
        self._master: int | None = None
        self._slave: int | None = None
        self._pending = b""
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._client_tasks: set[asyncio.Task[None]] = set()
        self.address = ""

    async def start(self) -> None:
        """Open the pty or start listening on 127.0.0.1 (``port``, 0: a free one); sets
        ``address``."""
        if self.transport == "pty":
            master, slave = pty.openpty()
            tty.setraw(slave)
            os.set_blocking(master, False)
            self._master, self._slave = master, slave
            self.address = os.ttyname(slave)
            asyncio.get_running_loop().add_reader(master, self._read_master)
        else:
            self._server = await asyncio.start_server(self._serve_client, "127.0.0.1", self.port)
            port = self._server.sockets[0].getsockname()[1]
            self.address = f"127.0.0.1:{port}"

    def _read_master(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, _READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: nobody has the slave open right now
            return
        if data:
            self._on_bytes(data)

    def _flush_master(self) -> None:
        if self._master is None:
            return
        try:
            written = os.write(self._master, self._pending)
        except BlockingIOError:
            written = 0
        self._pending = self._pending[written:]
        loop = asyncio.get_running_loop()
        if self._pending:
            loop.add_writer(self._master, self._flush_master)
        else:
            loop.remove_writer(self._master)

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._clients.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._client_tasks.add(task)
        try:
            while data := await reader.read(_READ_CHUNK):
                self._on_bytes(data)
        except (ConnectionError, OSError):
            pass
        finally:
            self._clients.discard(writer)
            writer.close()
            if task is not None:
                self._client_tasks.discard(task)

    def send(self, data: bytes) -> None:
        """Write ``data`` to the driver side."""
        if self.transport == "pty":
            self._pending += data
            self._flush_master()
            return
        for writer in list(self._clients):
            writer.write(data)

    def drop_clients(self) -> None:
        """Close every TCP connection (as a device that rebooted)."""
        for writer in list(self._clients):
            writer.close()

    async def stop(self) -> None:
        """Close the pty or the server and its connections."""
        if self._master is not None:
            loop = asyncio.get_running_loop()
            loop.remove_reader(self._master)
            loop.remove_writer(self._master)
            os.close(self._master)
            self._master = None
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None
        if self._server is not None:
            self._server.close()
            self.drop_clients()
            for task in list(self._client_tasks):
                task.cancel()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._server.wait_closed()
            self._server = None
