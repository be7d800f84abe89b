"""A simulated ESC/POS ticket printer over a pty or TCP (the port-9100 style raw socket).

It parses the byte stream, keeps a text log of what was printed (GB18030 decoded),
splits it into tickets at each cut, answers DLE EOT 1-4 and GS r 1 with the bit layouts
of docs/devices/ticket-printer.md, and takes faults: ``paper`` ("ok" / "near_end" /
"end"), ``cover_open``, ``cutter_error``, ``paper_end_after_lines`` (the roll runs out
mid-job), ``silent`` and ``answer_limit`` (answer that many status requests, then stop,
as a printer that hangs).

Start::

    async with EscPosPrinterSimulator(transport="tcp") as sim:
        EscPosPrinter(DeviceIdentity(..., address=sim.address))
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from edge_agent.devices.stream import StreamEndpoint
from edge_agent.devices.ticket_printer.commands import DLE, ESC, FS, GS, LF

# ESC x commands and how many argument bytes follow them.
_ESC_ARGS = {0x40: 0, 0x61: 1, 0x45: 1, 0x64: 1, 0x74: 1, 0x21: 1, 0x4D: 1, 0x2D: 1, 0x4A: 1}
_GS_ARGS = {0x21: 1, 0x42: 1, 0x48: 1, 0x66: 1, 0x68: 1, 0x77: 1}


class EscPosPrinterSimulator:
    """One printer; ``address`` is the pty path or ``127.0.0.1:port`` once started."""

    def __init__(self, *, transport: str = "pty", encoding: str = "gb18030", port: int = 0) -> None:
        self._endpoint = StreamEndpoint(self._on_bytes, transport=transport, port=port)
        self.encoding = encoding
        self.paper = "ok"
        self.cover_open = False
        self.cutter_error = False
        self.silent = False
        self.answer_limit: int | None = None
        self.answered = 0
        self.paper_end_after_lines: int | None = None
        self.chinese_mode = False
        self.lines: list[str] = []  # the text log since start, one entry per printed line
        self.tickets: list[list[str]] = []  # lines between cuts
        self.cuts: list[str] = []  # "full" / "partial"
        self.qr_codes: list[str] = []
        self.unknown_commands = 0
        self.discarded_bytes = 0
        self._current: list[str] = []
        self._text = bytearray()
        self._buf = b""
        self._qr_store = ""

    @property
    def address(self) -> str:
        """Where the driver connects."""
        return self._endpoint.address

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

    # --- state as status bytes ------------------------------------------------------

    @property
    def blocked(self) -> bool:
        """Whether the mechanism refuses to print (paper end, cover open, cutter jam)."""
        return self.paper == "end" or self.cover_open or self.cutter_error

    def dle_eot_reply(self, n: int) -> int:
        """The DLE EOT n byte for the current state (bits 1 and 4 always set)."""
        value = 0x12
        if n == 1 and self.blocked:
            value |= 0x08
        elif n == 2:
            value |= (0x04 if self.cover_open else 0) | (0x20 if self.paper == "end" else 0)
            value |= 0x40 if self.cutter_error else 0
        elif n == 3 and self.cutter_error:
            value |= 0x08
        elif n == 4:
            value |= 0x0C if self.paper in ("near_end", "end") else 0
            value |= 0x60 if self.paper == "end" else 0
        return value

    def gs_r1_reply(self) -> int:
        """The GS r 1 byte: bits 0-1 near end, bits 2-3 end (empty = 0x0F)."""
        value = 0x03 if self.paper in ("near_end", "end") else 0
        return value | (0x0C if self.paper == "end" else 0)

    def _answer(self, value: int) -> None:
        if self.silent or (self.answer_limit is not None and self.answered >= self.answer_limit):
            return
        self.answered += 1
        self._endpoint.send(bytes([value]))

    # --- the byte stream ------------------------------------------------------------

    def _on_bytes(self, data: bytes) -> None:
        self._buf += data
        while self._buf:
            used = self._step(self._buf)
            if used == 0:
                break  # a command waits for its arguments
            self._buf = self._buf[used:]

    def _step(self, buf: bytes) -> int:
        """Consume one command or text byte from ``buf``; 0 if more bytes are needed."""
        b = buf[0]
        if b == DLE:
            if len(buf) < 3:
                return 0
            if buf[1] == 0x04 and buf[2] in (1, 2, 3, 4):
                self._answer(self.dle_eot_reply(buf[2]))
                return 3
            self.unknown_commands += 1
            return 1
        if b == LF:
            self._end_line()
            return 1
        if b == 0x0D:
            return 1
        if b == ESC:
            return self._esc(buf)
        if b == FS:
            if len(buf) < 2:
                return 0
            self.chinese_mode = {0x26: True, 0x2E: False}.get(buf[1], self.chinese_mode)
            return 2
        if b == GS:
            return self._gs(buf)
        if b < 0x20:
            self.unknown_commands += 1
            return 1
        if self.blocked:
            self.discarded_bytes += 1
        else:
            self._text.append(b)
        return 1

    def _esc(self, buf: bytes) -> int:
        if len(buf) < 2:
            return 0
        nargs = _ESC_ARGS.get(buf[1])
        if nargs is None:
            self.unknown_commands += 1
            return 2
        if len(buf) < 2 + nargs:
            return 0
        if buf[1] == 0x40:
            self.chinese_mode = False
        elif buf[1] == 0x64:
            for _ in range(buf[2]):
                self._end_line()
        return 2 + nargs

    def _gs(self, buf: bytes) -> int:
        if len(buf) < 2:
            return 0
        cmd = buf[1]
        if cmd == 0x56:  # GS V m [n]
            if len(buf) < 3:
                return 0
            size = 4 if buf[2] in (0x41, 0x42) else 3
            if len(buf) < size:
                return 0
            self._cut("partial" if buf[2] in (0x01, 0x31, 0x42) else "full")
            return size
        if cmd == 0x72:  # GS r n
            if len(buf) < 3:
                return 0
            if buf[2] in (0x01, 0x31):
                self._answer(self.gs_r1_reply())
            return 3
        if cmd == 0x28:  # GS ( k pL pH payload
            if len(buf) < 5:
                return 0
            size = 5 + buf[3] + (buf[4] << 8)
            if len(buf) < size:
                return 0
            self._gs_paren(buf[2], buf[5:size])
            return size
        nargs = _GS_ARGS.get(cmd)
        if nargs is None:
            self.unknown_commands += 1
            return 2
        return 0 if len(buf) < 2 + nargs else 2 + nargs

    def _gs_paren(self, kind: int, payload: bytes) -> None:
        if kind != 0x6B or len(payload) < 2 or payload[0] != 0x31:
            return
        if payload[1] == 0x50:  # store QR data
            self._qr_store = payload[3:].decode("utf-8", errors="replace")
        elif payload[1] == 0x51 and not self.blocked:  # print stored QR
            self.qr_codes.append(self._qr_store)
            self._text += f"[QR:{self._qr_store}]".encode()

    def _end_line(self) -> None:
        if self.blocked:
            self._text.clear()
            return
        line = self._text.decode(self.encoding, errors="replace")
        self._text.clear()
        self.lines.append(line)
        self._current.append(line)
        if self.paper_end_after_lines is not None and len(self.lines) >= self.paper_end_after_lines:
            self.paper = "end"

    def _cut(self, kind: str) -> None:
        if self.blocked:
            return
        if self._text:
            self._end_line()
        self.cuts.append(kind)
        self.tickets.append(self._current)
        self._current = []

    def text_log(self) -> str:
        """Everything printed so far, one line each, tickets separated by a cut marker."""
        out: list[str] = []
        for ticket in self.tickets:
            out.extend(ticket)
            out.append("--- cut ---")
        out.extend(self._current)
        return "\n".join(out)
