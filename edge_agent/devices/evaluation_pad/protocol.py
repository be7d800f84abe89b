"""The evaluation pad (好差评) wire protocol: our own, because no open standard exists.

One frame format over serial and TCP alike (docs/devices/evaluation-pad.md has the byte
tables and worked examples)::

    STX VER TYPE SEQ LEN_HI LEN_LO BODY… CRC_HI CRC_LO ETX
    02  01  tt   ss  (BODY length, BE)  UTF-8 JSON  CRC-16/CCITT-FALSE   03

The CRC covers VER through the last BODY byte. Requests and the pad's own reports are
answered with ACK/NAK (or a reply type) echoing their SEQ, so either side can retransmit.
Satisfaction levels and their codes live in ``levels``.
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

from edge_agent.devices.stream import INCOMPLETE, Invalid, ParseResult

STX: Final = 0x02
ETX: Final = 0x03
VERSION: Final = 0x01
HEADER_LEN: Final = 6
OVERHEAD: Final = 9
MAX_BODY: Final = 4096


class MsgType(IntEnum):
    """TYPE byte values; 0x8x are replies to the request 0x0x with the same SEQ."""

    HELLO = 0x01
    STATUS = 0x02
    BIND = 0x03
    EVALUATE = 0x04
    CANCEL = 0x05
    ACK = 0x06
    RESULT = 0x11
    WALKAWAY = 0x12
    STATUS_EVENT = 0x13
    NAK = 0x15
    HELLO_REPLY = 0x81
    STATUS_REPLY = 0x82


REPLY_TYPES: Final = frozenset(
    {MsgType.ACK, MsgType.NAK, MsgType.HELLO_REPLY, MsgType.STATUS_REPLY}
)
REPORT_TYPES: Final = frozenset({MsgType.RESULT, MsgType.WALKAWAY, MsgType.STATUS_EVENT})


class NakCode:
    """Reasons carried in a NAK body's ``error`` field."""

    CRC = "crc"
    LENGTH = "length"
    TYPE = "type"
    BODY = "body"
    NOT_BOUND = "not_bound"
    WINDOW = "window"
    BUSY = "busy"
    UNKNOWN_REQUEST = "unknown_request"


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection); ``b"123456789"`` → 0x29B1."""
    return binascii.crc_hqx(data, 0xFFFF)


@dataclass(frozen=True, slots=True)
class PadFrame:
    """One decoded frame; ``type`` stays an int so unknown types can be NAKed, not dropped."""

    type: int
    seq: int
    body: bytes = b""

    def json(self) -> dict[str, Any]:
        """The body as a JSON object (``{}`` when empty); ``ValueError`` if it is not one."""
        if not self.body:
            return {}
        value = json.loads(self.body.decode("utf-8"))
        if not isinstance(value, dict):
            raise ValueError("body is not a JSON object")  # noqa: TRY004 - bad data, not a bad call
        return value


def encode_frame(msg_type: int, seq: int, body: dict[str, Any] | None = None) -> bytes:
    """The bytes of one frame; ``body`` is sent as compact UTF-8 JSON (none when empty)."""
    payload = (
        json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8") if body else b""
    )
    if len(payload) > MAX_BODY:
        raise ValueError(f"body of {len(payload)} bytes exceeds {MAX_BODY}")
    if not 0 <= seq <= 0xFF or not 0 <= msg_type <= 0xFF:
        raise ValueError("type and seq must fit one byte")
    inner = bytes([VERSION, msg_type, seq]) + len(payload).to_bytes(2, "big") + payload
    return bytes([STX]) + inner + crc16(inner).to_bytes(2, "big") + bytes([ETX])


def parse_frame(buf: bytes, i: int) -> ParseResult[PadFrame]:
    """``FrameScanner`` parser: the frame starting at ``buf[i]`` (an STX byte)."""
    if len(buf) - i < HEADER_LEN:
        return INCOMPLETE
    if buf[i + 1] != VERSION:
        return Invalid("version")
    length = int.from_bytes(buf[i + 4 : i + 6], "big")
    if length > MAX_BODY:
        return Invalid("length")
    end = i + OVERHEAD + length
    if len(buf) < end:
        return INCOMPLETE
    if buf[end - 1] != ETX:
        return Invalid("etx")
    inner = buf[i + 1 : end - 3]
    if crc16(inner) != int.from_bytes(buf[end - 3 : end - 1], "big"):
        return Invalid("crc")
    return PadFrame(type=buf[i + 2], seq=buf[i + 3], body=bytes(buf[i + 6 : end - 3])), end
