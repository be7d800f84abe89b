"""ESC/POS bytes: a small command builder and the status-byte layouts.

See docs/devices/ticket-printer.md.

The builder covers what a queue ticket needs: init, Chinese mode (FS &) with GB18030
text, alignment, bold, character size, feeds, cuts and a QR code (GS ( k). Status replies
come in two *different* layouts that must never be mixed: real-time ``DLE EOT n`` (bits
1 and 4 always set, idle = 0x12) and the in-order ``GS r 1`` (bits 0-1 near end, bits
2-3 end, empty = 0x0F).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Final, Self

ESC: Final = 0x1B
GS: Final = 0x1D
FS: Final = 0x1C
DLE: Final = 0x10
EOT: Final = 0x04
LF: Final = 0x0A

GS_R1: Final = bytes([GS, 0x72, 0x01])


def dle_eot(n: int) -> bytes:
    """Real-time status request ``10 04 n``: 1 printer, 2 offline cause, 3 error, 4 paper."""
    if n not in (1, 2, 3, 4):
        raise ValueError("DLE EOT n must be 1-4")
    return bytes([DLE, EOT, n])


class Align(IntEnum):
    """``ESC a n`` values."""

    LEFT = 0
    CENTER = 1
    RIGHT = 2


class EscPos:
    """Chainable builder: ``EscPos().init().chinese().line("你好").cut().build()``."""

    def __init__(self, *, encoding: str = "gb18030") -> None:
        self.encoding = encoding
        self._buf = bytearray()

    def raw(self, data: bytes) -> Self:
        """Append bytes as they are."""
        self._buf += data
        return self

    def init(self) -> Self:
        """``ESC @``: reset modes; a job starts with it."""
        return self.raw(bytes([ESC, 0x40]))

    def chinese(self, on: bool = True) -> Self:
        """``FS &`` / ``FS .``: two-byte (GB18030/GBK) Chinese character mode on or off."""
        return self.raw(bytes([FS, 0x26 if on else 0x2E]))

    def align(self, align: Align) -> Self:
        """``ESC a n``."""
        return self.raw(bytes([ESC, 0x61, int(align)]))

    def bold(self, on: bool = True) -> Self:
        """``ESC E n``."""
        return self.raw(bytes([ESC, 0x45, 1 if on else 0]))

    def size(self, width: int = 1, height: int = 1) -> Self:
        """``GS ! n``: character magnification 1-8 in each direction."""
        if not (1 <= width <= 8 and 1 <= height <= 8):
            raise ValueError("width and height must be 1-8")
        return self.raw(bytes([GS, 0x21, (width - 1) << 4 | (height - 1)]))

    def text(self, text: str) -> Self:
        """Text in the builder's encoding; ``ValueError`` names a character it cannot hold."""
        if any(ord(c) < 0x20 and c not in "\n" for c in text):
            raise ValueError("text must not contain control characters")
        try:
            return self.raw(text.encode(self.encoding))
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"{text[exc.start : exc.end]!r} cannot be printed in {self.encoding}"
            ) from exc

    def line(self, text: str = "") -> Self:
        """Text then LF (print and feed one line)."""
        return self.text(text).raw(bytes([LF]))

    def feed(self, lines: int) -> Self:
        """``ESC d n``: print and feed ``lines`` lines."""
        if not 0 <= lines <= 255:
            raise ValueError("lines must be 0-255")
        return self.raw(bytes([ESC, 0x64, lines]))

    def cut(self, *, partial: bool = False) -> Self:
        """``GS V 0`` full or ``GS V 1`` partial cut."""
        return self.raw(bytes([GS, 0x56, 1 if partial else 0]))

    def qr(self, data: str, *, module_size: int = 6) -> Self:
        """A QR code, model 2, error correction M: ``GS ( k`` fn 65, 67, 69, 80, 81."""
        payload = data.encode("utf-8")
        if not payload or len(payload) > 700:
            raise ValueError("QR data must be 1-700 bytes")
        if not 1 <= module_size <= 16:
            raise ValueError("module_size must be 1-16")
        store = len(payload) + 3
        return self.raw(
            bytes([GS, 0x28, 0x6B, 4, 0, 0x31, 0x41, 0x32, 0x00])  # model 2
            + bytes([GS, 0x28, 0x6B, 3, 0, 0x31, 0x43, module_size])
            + bytes([GS, 0x28, 0x6B, 3, 0, 0x31, 0x45, 0x31])  # level M
            + bytes([GS, 0x28, 0x6B, store & 0xFF, store >> 8, 0x31, 0x50, 0x30])
            + payload
            + bytes([GS, 0x28, 0x6B, 3, 0, 0x31, 0x51, 0x30])  # print
        )

    def build(self) -> bytes:
        """The bytes so far."""
        return bytes(self._buf)


# --- status -------------------------------------------------------------------------


class PaperState(Enum):
    """Roll paper sensor state."""

    OK = "ok"
    NEAR_END = "near_end"
    END = "end"


@dataclass(frozen=True, slots=True, kw_only=True)
class PrinterStatus:
    """The four DLE EOT replies decoded."""

    offline: bool
    cover_open: bool
    paper_stop: bool
    error: bool
    cutter_error: bool
    unrecoverable: bool
    auto_recoverable: bool
    paper: PaperState


def check_dle_eot_byte(value: int) -> int:
    """``value`` if it looks like a DLE EOT reply (bits 1 and 4 set, bits 0 and 7 clear)."""
    if value & 0x93 != 0x12:
        raise ValueError(f"0x{value:02x} is not a DLE EOT status byte")
    return value


def paper_from_dle_eot4(value: int) -> PaperState:
    """DLE EOT 4 layout: bits 2-3 near end (0x0C), bits 5-6 paper end (0x60)."""
    check_dle_eot_byte(value)
    if value & 0x60:
        return PaperState.END
    if value & 0x0C:
        return PaperState.NEAR_END
    return PaperState.OK


def paper_from_gs_r1(value: int) -> PaperState:
    """GS r 1 layout: bits 0-1 near end (0x03), bits 2-3 end (0x0C); empty = 0x0F."""
    if value & 0x90:
        raise ValueError(f"0x{value:02x} is not a GS r 1 status byte")
    if value & 0x0C:
        return PaperState.END
    if value & 0x03:
        return PaperState.NEAR_END
    return PaperState.OK


def decode_status(r1: int, r2: int, r3: int, r4: int) -> PrinterStatus:
    """Combine the replies to DLE EOT 1, 2, 3 and 4; ``ValueError`` on a malformed byte."""
    for value in (r1, r2, r3):
        check_dle_eot_byte(value)
    return PrinterStatus(
        offline=bool(r1 & 0x08),
        cover_open=bool(r2 & 0x04),
        paper_stop=bool(r2 & 0x20),
        error=bool(r2 & 0x40),
        cutter_error=bool(r3 & 0x08),
        unrecoverable=bool(r3 & 0x20),
        auto_recoverable=bool(r3 & 0x40),
        paper=paper_from_dle_eot4(r4),
    )
