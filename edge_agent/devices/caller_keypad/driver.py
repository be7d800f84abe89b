"""Driver of the wired caller keypads (窗口呼叫器) on one RS-485 bus.

A reader task owns the bus: each key frame is acknowledged with ``E5``, turned into a
``KeyPress`` and an event (``keypad.call`` with the window number, and so on), and
queued for ``next_key``. ``show`` writes a keypad's six-character display and waits for
its ``E5``. Key frames are not retransmitted by keypads, so a key is never doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from edge_agent.devices.base import (
    DeviceError,
    DeviceIdentity,
    DeviceTimeout,
    DeviceUnavailable,
    Driver,
    EventSink,
    Health,
    ProbeResult,
)
from edge_agent.devices.caller_keypad.protocol import (
    ACK,
    Func,
    Key,
    KeypadFrame,
    decode_key,
    display_data,
    encode_frame,
    parse_frame,
)
from edge_agent.devices.caller_keypad.settings import CallerKeypadSettings
from edge_agent.devices.registry import register_driver
from edge_agent.devices.settings import DriverSettings
from edge_agent.devices.stream import FrameScanner, StreamLink, read_frames_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyPress:
    """One key pressed at a window; ``arg`` is what was typed before it (ticket, window)."""

    window: str
    address: int
    key: Key
    arg: str = ""
    ts: float = field(default_factory=time.time)

    @property
    def event_name(self) -> str:
        """``keypad.call``, ``keypad.skip``, …"""
        return f"keypad.{self.key.name.lower()}"


@register_driver("caller_keypad")
class CallerKeypad(Driver):
    """The keypads on one bus; ``identity.address`` is a serial path or host:port.

    Settings: ``baudrate`` (9600), ``reply_timeout`` (0.5 s), ``retries`` (2),
    ``probe_address`` (1), ``frame_gap`` (1 s of silence drops a partial frame).

    Which window a keypad serves is not a driver setting: the agent's
    ``[[queue_windows]]`` tables name the bus (``keypad``) and the address
    (``keypad_address``). The driver reports the address with every key, and a
    window name equal to the address for callers without that config.
    """

    kind = "caller_keypad"
    settings_model: ClassVar[type[DriverSettings]] = CallerKeypadSettings
    config: CallerKeypadSettings

    def __init__(
        self,
        identity: DeviceIdentity,
        *,
        settings: Mapping[str, Any] | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        super().__init__(identity, settings=settings, on_event=on_event)
        c = self.config
        self.reply_timeout = c.reply_timeout
        self.retries = c.retries
        self.frame_gap = c.frame_gap
        self.probe_address = c.probe_address
        self._link = StreamLink(identity.address, device_id=identity.device_id, baudrate=c.baudrate)
        self._scanner: FrameScanner[KeypadFrame] = FrameScanner(parse_frame, starts=b"\xff\x68\xe5")
        self._keys: asyncio.Queue[KeyPress] = asyncio.Queue(maxsize=256)
        self._lock = asyncio.Lock()
        self._waiter: tuple[int, asyncio.Future[KeypadFrame]] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._dead: DeviceError | None = None
        self.counters = {"keys": 0, "unknown_keys": 0, "displays": 0, "retransmits": 0}

    def window_of(self, address: int) -> str:
        """The window a keypad address belongs to when no config says otherwise: itself."""
        return str(address)

    def address_of(self, window: str | int) -> int:
        """The bus address of a numbered window's keypad (``ValueError`` otherwise)."""
        try:
            address = int(window)
        except ValueError as exc:
            raise ValueError(f"window {window!r} has no keypad address") from exc
        if not 1 <= address <= 254:
            raise ValueError(f"keypad address {address} is outside 1-254")
        return address

    async def open(self) -> None:
        """Open the bus and start reading keys."""
        await self._link.open()
        self._dead = None
        self._reader = asyncio.create_task(
            self._read_loop(), name=f"keypad-reader:{self.device_id}"
        )

    async def close(self) -> None:
        """Stop reading and close the bus; safe to call twice."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        await self._link.close()

    async def probe(self) -> ProbeResult:
        """QUERY one keypad; it answers ``model;firmware``."""
        reply = await self._request(self.probe_address, Func.QUERY, b"", expect=Func.QUERY_REPLY)
        model, _, firmware = reply.data.decode("ascii", "replace").partition(";")
        return ProbeResult(model=model or None, firmware=firmware or None)

    async def health(self) -> Health:
        """Counters and link state; no I/O."""
        return {
            "connected": self._link.is_open and self._dead is None,
            "bad_frames": self._scanner.stats.bad_frames,
            "garbage_bytes": self._scanner.stats.garbage_bytes,
            "pending_keys": self._keys.qsize(),
            **self.counters,
        }

    async def next_key(self, *, within: float) -> KeyPress:
        """The next key pressed on any keypad; ``DeviceTimeout`` if none ``within`` seconds."""
        if self._dead is not None and self._keys.empty():
            raise DeviceUnavailable(str(self._dead), device_id=self.device_id)
        try:
            async with asyncio.timeout(within):
                return await self._keys.get()
        except TimeoutError as exc:
            raise DeviceTimeout(f"no key within {within:g} s", device_id=self.device_id) from exc

    async def show(self, window: str | int, text: str) -> None:
        """Put up to six ASCII characters (the current ticket, e.g. ``A012``) on a keypad.

        ``window`` is the keypad's bus address, or a window number equal to it.
        """
        await self._request(self.address_of(window), Func.DISPLAY, display_data(text), expect=None)
        self.counters["displays"] += 1

    async def _request(
        self, address: int, func: Func, data: bytes, *, expect: Func | None
    ) -> KeypadFrame:
        """Send a frame; await ``E5`` (``expect=None``) or the reply frame, with retries."""
        frame = encode_frame(address, func, data)
        async with self._lock:
            for attempt in range(self.retries + 1):
                if self._dead is not None:
                    raise DeviceUnavailable(str(self._dead), device_id=self.device_id)
                if attempt:
                    self.counters["retransmits"] += 1
                future: asyncio.Future[KeypadFrame] = asyncio.get_running_loop().create_future()
                self._waiter = (-1 if expect is None else int(expect), future)
                try:
                    await self._link.write(frame)
                    async with asyncio.timeout(self.reply_timeout):
                        return await future
                except TimeoutError:
                    continue
                finally:
                    self._waiter = None
            raise DeviceTimeout(
                f"keypad {address} did not answer {func.name} after {self.retries + 1} tries",
                device_id=self.device_id,
            )

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await read_frames_of(self._link, self._scanner, frame_gap=self.frame_gap)
                for frame in self._scanner.feed(data):
                    await self._dispatch(frame)
        except DeviceError as exc:
            logger.warning("keypad bus %s lost: %s", self.device_id, exc)
            self._dead = exc
            if self._waiter is not None and not self._waiter[1].done():
                self._waiter[1].set_exception(exc)

    async def _dispatch(self, frame: KeypadFrame) -> None:
        waiter = self._waiter
        if waiter is not None and frame.func == waiter[0] and not waiter[1].done():
            waiter[1].set_result(frame)
            return
        if frame.func != Func.KEY:
            logger.debug("keypad: unexpected func 0x%02x from %d", frame.func & 0xFF, frame.addr)
            return
        await self._link.write(bytes([ACK]))
        try:
            key, arg = decode_key(frame.data)
        except ValueError:
            self.counters["unknown_keys"] += 1
            logger.info("keypad %d sent an unknown key code", frame.addr)
            return
        press = KeyPress(window=self.window_of(frame.addr), address=frame.addr, key=key, arg=arg)
        self.counters["keys"] += 1
        self.emit(press.event_name, window=press.window, address=press.address, arg=press.arg)
        try:
            self._keys.put_nowait(press)
        except asyncio.QueueFull:
            logger.warning("keypad bus %s: key queue full, oldest key dropped", self.device_id)
            self._keys.get_nowait()
            self._keys.put_nowait(press)
