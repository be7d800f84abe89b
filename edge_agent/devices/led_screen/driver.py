"""Driver of the window LED strips on one controller link (RS-485 bus, serial or TCP).

One driver owns the link and addresses each window's screen by its bus address, so a
whole hall of strips on one RS-485 pair is one device. Every addressed command waits for
the screen's reply and is retried on silence or a damaged reply; broadcasts are not
answered. Text that GB2312 cannot hold is rejected before anything is sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

from edge_agent.devices.base import (
    DeviceIdentity,
    DeviceRefused,
    DeviceTimeout,
    Driver,
    EventSink,
    Health,
    ProbeResult,
)
from edge_agent.devices.led_screen.protocol import (
    BROADCAST,
    Cmd,
    Effect,
    LedFrame,
    Status,
    encode_frame,
    encode_text,
    parse_frame,
)
from edge_agent.devices.led_screen.settings import LedScreenSettings
from edge_agent.devices.registry import register_driver
from edge_agent.devices.settings import DriverSettings
from edge_agent.devices.stream import FrameScanner, StreamLink

logger = logging.getLogger(__name__)

_HINTS: Final = {
    Status.BAD_COMMAND: "the controller firmware does not know this command",
    Status.BAD_TEXT: "the screen could not decode the text; check its character set",
    Status.BAD_LINE: "the screen has fewer lines; check the screen's line count in config",
    Status.BAD_VALUE: "a value is out of range for this screen",
}


@register_driver("led_window_screen")
class LedWindowScreen(Driver):
    """The LED strips behind one controller link; ``identity.address`` is a path or host:port.

    Settings: ``baudrate`` (9600), ``reply_timeout`` (0.5 s), ``retries`` (2),
    ``unencodable`` ("reject" or "replace" with □), ``probe_address`` (1). Which screen
    (bus address) belongs to which window is the agent's ``[[queue_windows]]`` config.
    """

    kind = "led_screen"
    settings_model: ClassVar[type[DriverSettings]] = LedScreenSettings
    config: LedScreenSettings

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
        self.unencodable = c.unencodable
        self.probe_address = c.probe_address
        self._link = StreamLink(identity.address, device_id=identity.device_id, baudrate=c.baudrate)
        self._scanner: FrameScanner[LedFrame] = FrameScanner(parse_frame, starts=b"\xaa")
        self._lock = asyncio.Lock()
        self.shown: dict[int, dict[int, str]] = {}
        self.counters = {"commands_ok": 0, "commands_failed": 0, "retransmits": 0}

    async def open(self) -> None:
        """Open the link."""
        await self._link.open()

    async def close(self) -> None:
        """Close the link; safe to call twice."""
        await self._link.close()

    async def probe(self) -> ProbeResult:
        """QUERY the first screen: it answers ``model;firmware;lines;chars``."""
        reply = await self._command(self.probe_address, Cmd.QUERY)
        fields = [*reply.data[1:].decode("ascii", "replace").split(";"), "", "", "", ""]
        model, firmware, lines, chars = fields[:4]
        return ProbeResult(
            model=model or None,
            firmware=firmware or None,
            details={
                "lines": int(lines) if lines.isdigit() else 0,
                "chars": int(chars) if chars.isdigit() else 0,
            },
        )

    async def health(self) -> Health:
        """Counters; no I/O."""
        return {
            "connected": self._link.is_open,
            "bad_frames": self._scanner.stats.bad_frames,
            "garbage_bytes": self._scanner.stats.garbage_bytes,
            **self.counters,
        }

    def address_of(self, window: str | int) -> int:
        """The bus address of a screen: ``window`` is the address or a window number equal to it.

        Which screen a window uses is the agent's ``[[queue_windows]]`` (``led``,
        ``led_address``), not a driver setting.
        """
        try:
            address = int(window)
        except ValueError as exc:
            raise ValueError(
                f"window {window!r} has no LED address: set led_address in [[queue_windows]]"
            ) from exc
        if not 1 <= address <= 254:
            raise ValueError(f"LED address {address} is outside 1-254")
        return address

    async def show_text(
        self, window: str | int, text: str, *, line: int = 1, effect: Effect = Effect.STATIC
    ) -> None:
        """Show ``text`` on one line of a window's screen; ``LedTextError`` if not GB2312."""
        if not 1 <= line <= 255:
            raise ValueError("line must be 1-255")
        encoded = encode_text(text, unencodable=self.unencodable)
        address = self.address_of(window)
        await self._command(address, Cmd.SHOW_TEXT, bytes([line, int(effect)]) + encoded)
        self.shown.setdefault(address, {})[line] = encoded.decode("gb2312")

    async def show_lines(self, window: str | int, lines: Sequence[str]) -> None:
        """Show several lines (line 1 first); every line is checked before any is sent."""
        for text in lines:
            encode_text(text, unencodable=self.unencodable)
        for number, text in enumerate(lines, start=1):
            await self.show_text(window, text, line=number)

    async def clear(self, window: str | int, *, line: int = 0) -> None:
        """Blank one line, or the whole screen with ``line=0``."""
        address = self.address_of(window)
        await self._command(address, Cmd.CLEAR, bytes([line]))
        if line:
            self.shown.get(address, {}).pop(line, None)
        else:
            self.shown.pop(address, None)

    async def broadcast_text(self, text: str, *, line: int = 1) -> None:
        """Show ``text`` on every screen at once (no screen replies to a broadcast)."""
        encoded = encode_text(text, unencodable=self.unencodable)
        async with self._lock:
            await self._link.write(
                encode_frame(BROADCAST, Cmd.SHOW_TEXT, bytes([line, 0]) + encoded)
            )

    async def _command(self, address: int, cmd: Cmd, data: bytes = b"") -> LedFrame:
        frame = encode_frame(address, cmd, data)
        async with self._lock:
            for attempt in range(self.retries + 1):
                if attempt:
                    self.counters["retransmits"] += 1
                await self._link.write(frame)
                reply = await self._await_reply(address, cmd)
                if reply is None:
                    continue
                raw = reply.data[0] if reply.data else Status.BAD_VALUE
                if raw != Status.OK:
                    self.counters["commands_failed"] += 1
                    status = _known_status(raw)
                    raise DeviceRefused(
                        f"LED {address} refused {cmd.name}: status 0x{raw:02x}",
                        code=status.name.lower() if status else "refused",
                        hint=_HINTS.get(status, "check the screen")
                        if status
                        else "check the screen",
                        device_id=self.device_id,
                    )
                self.counters["commands_ok"] += 1
                return reply
            self.counters["commands_failed"] += 1
            raise DeviceTimeout(
                f"LED {address} did not answer {cmd.name} after {self.retries + 1} tries",
                device_id=self.device_id,
            )

    async def _await_reply(self, address: int, cmd: Cmd) -> LedFrame | None:
        """The matching reply, or ``None`` after ``reply_timeout`` (damaged replies skipped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reply_timeout
        while (remaining := deadline - loop.time()) > 0:
            try:
                data = await self._link.read(within=remaining)
            except DeviceTimeout:
                break
            for frame in self._scanner.feed(data):
                if frame.addr == address and frame.cmd == cmd | 0x80:
                    return frame
                logger.debug("LED: unexpected frame addr %d cmd 0x%02x", frame.addr, frame.cmd)
            if self._scanner.take_errors():
                logger.debug("LED %d: damaged reply skipped", address)
        self._scanner.reset()
        return None


def _known_status(value: int) -> Status | None:
    try:
        return Status(value)
    except ValueError:
        return None
