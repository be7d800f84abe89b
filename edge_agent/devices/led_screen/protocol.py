"""Window LED screen protocol (our own framing; vendor protocols are proprietary).

One frame format for both directions, over RS-485/serial or TCP (docs/devices/led-screen.md)::

    AA 55 ADDR CMD LEN_HI LEN_LO DATA… SUM
    SUM = (ADDR + CMD + LEN_HI + LEN_LO + ΣDATA) mod 256

ADDR 1-254 is a screen (normally its window number), 0xFF broadcasts (nobody replies).
A screen answers every addressed command with ``CMD | 0x80`` and a status byte first in
DATA. Text is GB2312, which is what window-strip controllers render.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from edge_agent.devices.stream import INCOMPLETE, Invalid, ParseResult

SYNC: Final = b"\xaa\x55"
BROADCAST: Final = 0xFF
MAX_DATA: Final = 512
MAX_TEXT_BYTES: Final = 128
OVERHEAD: Final = 7
SUBSTITUTE: Final = "□"
"""Stands in for a character GB2312 lacks when ``unencodable = "replace"`` (GB2312 A1F5)."""


class Cmd(IntEnum):
    """Command bytes; a reply sets bit 7 (``SHOW_TEXT`` → ``0x81``)."""

    SHOW_TEXT = 0x01  # data: LINE, EFFECT, GB2312 text
    CLEAR = 0x02  # data: LINE (0 = all lines)
    BRIGHTNESS = 0x03  # data: level 0-15
    QUERY = 0x10  # reply data: status, ASCII "model;firmware;lines;chars"


class Status(IntEnum):
    """First DATA byte of a reply."""

    OK = 0x00
    BAD_COMMAND = 0x02
    BAD_TEXT = 0x03
    BAD_LINE = 0x04
    BAD_VALUE = 0x05


class Effect(IntEnum):
    """How a line is shown."""

    STATIC = 0
    SCROLL = 1
    BLINK = 2


class LedTextError(ValueError):
    """Text cannot be shown in GB2312; ``char`` and ``index`` say where."""

    def __init__(self, text: str, index: int) -> None:
        self.char = text[index]
        self.index = index
        super().__init__(
            f"character {self.char!r} (U+{ord(self.char):04X}) at position {index} is not in "
            f"GB2312; change the text or set unencodable = 'replace' to show {SUBSTITUTE!r}"
        )


def encode_text(text: str, *, unencodable: str = "reject") -> bytes:
    """GB2312 bytes of ``text``; reject (``LedTextError``) or substitute ``□`` for the rest."""
    if unencodable not in ("reject", "replace"):
        raise ValueError("unencodable must be 'reject' or 'replace'")
    out = bytearray()
    for index, char in enumerate(text):
        if ord(char) < 0x20:
            raise LedTextError(text, index)
        try:
            out += char.encode("gb2312")
        except UnicodeEncodeError:
            if unencodable == "reject":
                raise LedTextError(text, index) from None
            out += SUBSTITUTE.encode("gb2312")
    if len(out) > MAX_TEXT_BYTES:
        raise ValueError(f"text is {len(out)} bytes in GB2312; a line holds {MAX_TEXT_BYTES}")
    return bytes(out)


@dataclass(frozen=True, slots=True)
class LedFrame:
    """One decoded frame."""

    addr: int
    cmd: int
    data: bytes = b""


def checksum(body: bytes) -> int:
    """Byte sum mod 256 of ADDR through the last DATA byte."""
    return sum(body) & 0xFF


def encode_frame(addr: int, cmd: int, data: bytes = b"") -> bytes:
    """The bytes of one frame."""
    if not (0 <= addr <= 0xFF and 0 <= cmd <= 0xFF):
        raise ValueError("addr and cmd must fit one byte")
    if len(data) > MAX_DATA:
        raise ValueError(f"data of {len(data)} bytes exceeds {MAX_DATA}")
    body = bytes([addr, cmd]) + len(data).to_bytes(2, "big") + data
    return SYNC + body + bytes([checksum(body)])


def parse_frame(buf: bytes, i: int) -> ParseResult[LedFrame]:
    """``FrameScanner`` parser for a frame starting at ``buf[i]`` (0xAA)."""
    if len(buf) - i < 2:
        return INCOMPLETE
    if buf[i + 1] != 0x55:
        return Invalid("sync")
    if len(buf) - i < 6:
        return INCOMPLETE
    length = int.from_bytes(buf[i + 4 : i + 6], "big")
    if length > MAX_DATA:
        return Invalid("length")
    end = i + OVERHEAD + length
    if len(buf) < end:
        return INCOMPLETE
    body = buf[i + 2 : end - 1]
    if checksum(body) != buf[end - 1]:
        return Invalid("checksum")
    return LedFrame(addr=body[0], cmd=body[1], data=bytes(body[4:])), end
