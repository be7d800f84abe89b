"""Caller keypad (窗口呼叫器) bus frames, FT1.2 style.

Variable frame, either direction, RS-485 9600 8N1 (docs/devices/caller-keypad.md)::

    FF 68 L L 68 ADDR FUNC DATA… CS 16
    L  = number of bytes ADDR..DATA;  CS = (ADDR + FUNC + ΣDATA) mod 256

plus the FT1.2 single-character acknowledgement ``E5``. ADDR is the keypad's bus address
(normally its window number). Key codes: ``0C`` call, ``0D`` recall, ``0B``
evaluate, ``12`` pause, ``13`` transfer, ``06 0F`` 弃号, ``00 0F`` hold, ``03 0F``
call-back. Display frames are ``FF 68 08 08 68 ADDR 02 d1…d6 CS 16``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Final

from edge_agent.devices.stream import INCOMPLETE, Invalid, ParseResult

PREAMBLE: Final = 0xFF
START: Final = 0x68
STOP: Final = 0x16
ACK: Final = 0xE5
DISPLAY_CHARS: Final = 6
FN_KEY: Final = 0x0F


class Func(IntEnum):
    """FUNC byte; a keypad's answer to a query sets bit 7."""

    KEY = 0x01  # keypad → host: KEY [0F] [ASCII argument]
    DISPLAY = 0x02  # host → keypad: six display characters
    QUERY = 0x03  # host → keypad; reply 0x83 with ASCII "model;firmware"
    QUERY_REPLY = 0x83


class Key(Enum):
    """Window operations on the keypad; the value is the key-code sequence."""

    CALL = b"\x0c"
    RECALL = b"\x0d"
    EVALUATE = b"\x0b"
    PAUSE = b"\x12"
    TRANSFER = b"\x13"
    SKIP = b"\x06\x0f"
    HOLD = b"\x00\x0f"
    CALLBACK = b"\x03\x0f"


@dataclass(frozen=True, slots=True)
class KeypadFrame:
    """A variable frame, or the single ACK (``func = -1``)."""

    addr: int
    func: int
    data: bytes = b""

    @property
    def is_ack(self) -> bool:
        """Whether this is the E5 single character."""
        return self.func == -1


ACK_FRAME: Final = KeypadFrame(addr=0, func=-1)


def encode_frame(addr: int, func: int, data: bytes = b"") -> bytes:
    """``FF 68 L L 68 ADDR FUNC DATA CS 16``."""
    if not (0 <= addr <= 0xFF and 0 <= func <= 0xFF):
        raise ValueError("addr and func must fit one byte")
    user = bytes([addr, func]) + data
    if len(user) > 0xFF:
        raise ValueError("frame data too long")
    return (
        bytes([PREAMBLE, START, len(user), len(user), START])
        + user
        + bytes([sum(user) & 0xFF, STOP])
    )


def parse_frame(buf: bytes, i: int) -> ParseResult[KeypadFrame]:
    """``FrameScanner`` parser; starts at FF (preamble), 68 or E5."""
    if buf[i] == ACK:
        return ACK_FRAME, i + 1
    start = i + 1 if buf[i] == PREAMBLE else i
    if len(buf) - start < 4:
        return INCOMPLETE
    if buf[start] != START:
        return Invalid("preamble")
    length = buf[start + 1]
    if buf[start + 2] != length or buf[start + 3] != START or length < 2:
        return Invalid("header")
    end = start + 4 + length + 2
    if len(buf) < end:
        return INCOMPLETE
    user = buf[start + 4 : start + 4 + length]
    if buf[end - 1] != STOP:
        return Invalid("stop")
    if sum(user) & 0xFF != buf[end - 2]:
        return Invalid("checksum")
    return KeypadFrame(addr=user[0], func=user[1], data=bytes(user[2:])), end


def encode_key(key: Key, *, arg: str = "") -> bytes:
    """DATA of a key frame: the key sequence and an ASCII argument (ticket, window)."""
    return key.value + arg.encode("ascii")


def decode_key(data: bytes) -> tuple[Key, str]:
    """The key and argument of a key frame's DATA; ``ValueError`` for unknown keys."""
    for key in sorted(Key, key=lambda k: -len(k.value)):
        if data.startswith(key.value):
            return key, data[len(key.value) :].decode("ascii", errors="strict")
    raise ValueError(f"unknown key code {data[:2].hex()}")


def display_data(text: str) -> bytes:
    """Six ASCII display characters, right-aligned; ``ValueError`` if it does not fit."""
    if len(text) > DISPLAY_CHARS or not text.isascii() or not text.isprintable():
        raise ValueError(f"keypad display holds {DISPLAY_CHARS} printable ASCII characters")
    return text.rjust(DISPLAY_CHARS).encode("ascii")
