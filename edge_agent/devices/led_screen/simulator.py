"""A simulated bus of window LED strips speaking ``led_screen.protocol`` over a pty or TCP.

Each screen has an address and a few lines of text; the simulator decodes GB2312 and
exposes what every screen shows now (``sim.text(3)``). Faults: ``silent`` (no replies),
``corrupt_next_reply`` (the next reply has a wrong checksum), ``inject(raw)``.

Start::

    async with LedScreenSimulator(addresses=range(1, 9), transport="pty") as sim:
        LedWindowScreen(DeviceIdentity(..., address=sim.address))
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from edge_agent.devices.led_screen.protocol import (
    BROADCAST,
    Cmd,
    LedFrame,
    Status,
    encode_frame,
    parse_frame,
)
from edge_agent.devices.stream import FrameScanner, StreamEndpoint


@dataclass(slots=True)
class ScreenState:
    """What one strip shows."""

    lines: dict[int, str] = field(default_factory=dict)
    effects: dict[int, int] = field(default_factory=dict)
    brightness: int = 8


class LedScreenSimulator:
    """Screens at ``addresses`` behind one link; ``address`` is the pty path or host:port."""

    def __init__(
        self,
        *,
        addresses: Iterable[int] = range(1, 17),
        transport: str = "pty",
        lines: int = 2,
        chars: int = 16,
        model: str = "SIM-LED-WIN",
        firmware: str = "2.1",
    ) -> None:
        self._endpoint = StreamEndpoint(self._on_bytes, transport=transport)
        self._scanner: FrameScanner[LedFrame] = FrameScanner(parse_frame, starts=b"\xaa")
        self.screens = {a: ScreenState() for a in addresses}
        self.line_count, self.chars, self.model, self.firmware = lines, chars, model, firmware
        self.silent = False
        self.corrupt_next_reply = False
        self.received: list[LedFrame] = []

    @property
    def address(self) -> str:
        """Where the driver connects."""
        return self._endpoint.address

    @property
    def bad_frames(self) -> int:
        """Frames dropped for a bad checksum, sync or length."""
        return self._scanner.stats.bad_frames

    def text(self, screen: int, line: int = 1) -> str:
        """The text a screen shows on ``line`` ("" when blank)."""
        return self.screens[screen].lines.get(line, "")

    def inject(self, raw: bytes) -> None:
        """Put arbitrary bytes on the line towards the driver."""
        self._endpoint.send(raw)

    async def __aenter__(self) -> Self:
        await self._endpoint.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._endpoint.stop()

    def _on_bytes(self, data: bytes) -> None:
        for frame in self._scanner.feed(data):
            self.received.append(frame)
            if frame.addr == BROADCAST:
                for address in self.screens:
                    self._apply(address, frame)
            elif frame.addr in self.screens:
                status, extra = self._apply(frame.addr, frame)
                self._reply(frame, status, extra)

    def _reply(self, frame: LedFrame, status: Status, extra: bytes) -> None:
        if self.silent:
            return
        wire = encode_frame(frame.addr, frame.cmd | 0x80, bytes([status]) + extra)
        if self.corrupt_next_reply:
            self.corrupt_next_reply = False
            wire = wire[:-1] + bytes([wire[-1] ^ 0xFF])
        self._endpoint.send(wire)

    def _apply(self, address: int, frame: LedFrame) -> tuple[Status, bytes]:
        screen = self.screens[address]
        data = frame.data
        if frame.cmd == Cmd.QUERY:
            info = f"{self.model};{self.firmware};{self.line_count};{self.chars}"
            return Status.OK, info.encode("ascii")
        if frame.cmd == Cmd.SHOW_TEXT:
            if len(data) < 2:
                return Status.BAD_VALUE, b""
            line, effect = data[0], data[1]
            if not 1 <= line <= self.line_count:
                return Status.BAD_LINE, b""
            try:
                text = data[2:].decode("gb2312")
            except UnicodeDecodeError:
                return Status.BAD_TEXT, b""
            screen.lines[line], screen.effects[line] = text, effect
            return Status.OK, b""
        if frame.cmd == Cmd.CLEAR:
            line = data[0] if data else 0
            if line == 0:
                screen.lines.clear()
            elif line > self.line_count:
                return Status.BAD_LINE, b""
            else:
                screen.lines.pop(line, None)
            return Status.OK, b""
        if frame.cmd == Cmd.BRIGHTNESS:
            if len(data) != 1 or data[0] > 15:
                return Status.BAD_VALUE, b""
            screen.brightness = data[0]
            return Status.OK, b""
        return Status.BAD_COMMAND, b""
