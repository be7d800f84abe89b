"""Frame codec of the SAM_A ID-card module (GA/T 467 host interface), pure bytes, no I/O.

A frame is ``AA AA AA 96 69``, a big-endian length counting every later byte, the body
and an XOR checksum over length…body. Requests carry CMD PARA [DATA]; responses carry
SW1 SW2 SW3 [DATA]. ``FrameDecoder`` pulls whole frames out of a byte stream, skipping
noise before a preamble, so a driver and the simulator share one parser.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import reduce
from operator import xor

from edge_agent.devices.base import DeviceError, ProtocolError

__all__ = [
    "MAX_BODY",
    "PREAMBLE",
    "SW3_MEANINGS",
    "Command",
    "FrameChecksumError",
    "FrameDecoder",
    "FrameLengthError",
    "Request",
    "Response",
    "SamStatusError",
    "Sw3",
    "checksum",
    "encode_frame",
    "encode_request",
    "encode_response",
    "parse_request",
    "parse_response",
]

PREAMBLE = bytes.fromhex("AAAAAA9669")
# The largest response is 30 10 with a 1024-byte fingerprint: 0x050A + 0x0400. Anything
# longer is a corrupt length field, and waiting for it would stall the stream.
MAX_BODY = 0x050A + 0x0400
_HEADER = len(PREAMBLE) + 2


class FrameChecksumError(ProtocolError):
    """A frame's XOR checksum does not match (a module answers SW3 10 to a host)."""


class FrameLengthError(ProtocolError):
    """A frame's length field is impossible, or the frame is cut short (SW3 11)."""


class Command(bytes, enum.Enum):
    """CMD PARA of every request the module knows (docs/devices/id-card-reader.md)."""

    RESET = b"\x10\xff"
    STATUS = b"\x11\xff"
    SAM_ID = b"\x12\xff"
    FIND = b"\x20\x01"
    SELECT = b"\x20\x02"
    READ_TEXT_PHOTO = b"\x30\x01"
    READ_WITH_FINGERPRINT = b"\x30\x10"
    READ_EXTRA_ADDRESS = b"\x30\x03"
    READ_MANAGEMENT = b"\x30\x05"


class Sw3(enum.IntEnum):
    """SW3 status codes (SW1 = SW2 = 00), docs/devices/id-card-reader.md."""

    OK = 0x90
    NO_CONTENT = 0x91
    FOUND = 0x9F
    BAD_CHECKSUM = 0x10
    BAD_LENGTH = 0x11
    BAD_COMMAND = 0x21
    NOT_PERMITTED = 0x23
    UNRECOGNISED = 0x24
    CARD_AUTH_SAM_FAILED = 0x31
    SAM_AUTH_CARD_FAILED = 0x32
    VERIFY_FAILED = 0x33
    UNKNOWN_CARD_TYPE = 0x40
    READ_FAILED = 0x41
    RANDOM_FAILED = 0x47
    SELF_TEST_FAILED = 0x60
    NOT_AUTHORISED = 0x66
    FIND_FAILED = 0x80
    SELECT_FAILED = 0x81


SW3_MEANINGS: dict[int, str] = {
    0x90: "success",
    0x91: "the card holds no such item",
    0x9F: "card found",
    0x10: "host frame checksum error",
    0x11: "host frame length error",
    0x21: "command error",
    0x23: "operation not permitted",
    0x24: "unrecognised error",
    0x31: "card failed to authenticate the SAM",
    0x32: "SAM failed to authenticate the card",
    0x33: "information verification error",
    0x40: "unknown card type",
    0x41: "read failed",
    0x47: "get random failed",
    0x60: "SAM self-test failed",
    0x66: "SAM not authorised",
    0x80: "find card failed",
    0x81: "select card failed",
}


class SamStatusError(DeviceError):
    """The module answered with a status that no person at the counter can fix."""

    reason = "sam_status"

    def __init__(self, message: str, *, sw3: int, device_id: str | None = None) -> None:
        super().__init__(message, device_id=device_id)
        self.sw3 = sw3


def checksum(data: bytes) -> int:
    """XOR of ``data`` (length field through the last body byte)."""
    return reduce(xor, data, 0)


def encode_frame(body: bytes) -> bytes:
    """Wrap ``body`` in preamble, big-endian length and checksum."""
    length = (len(body) + 1).to_bytes(2, "big")
    return PREAMBLE + length + body + bytes([checksum(length + body)])


def encode_request(command: Command | bytes, data: bytes = b"") -> bytes:
    """A complete request frame, e.g. ``encode_request(Command.STATUS)`` → ``…00 03 11 FF ED``."""
    return encode_frame(bytes(command) + data)


def encode_response(sw3: int, data: bytes = b"", *, sw1: int = 0, sw2: int = 0) -> bytes:
    """A complete response frame (used by the simulator and tests)."""
    return encode_frame(bytes([sw1, sw2, sw3]) + data)


@dataclass(frozen=True, slots=True)
class Request:
    """A decoded request: two command bytes and the optional data."""

    command: bytes
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Response:
    """A decoded response: the three status words and the payload after them."""

    sw1: int
    sw2: int
    sw3: int
    data: bytes = b""

    @property
    def meaning(self) -> str:
        """What SW3 means in words (for messages and logs; holds no card data)."""
        return SW3_MEANINGS.get(self.sw3, f"unknown status 0x{self.sw3:02X}")


def _split(frame: bytes, *, verify: bool = True) -> bytes:
    """Check one complete frame and return its body; ``ProtocolError`` if malformed."""
    if not frame.startswith(PREAMBLE):
        raise ProtocolError("frame does not start with the AA AA AA 96 69 preamble")
    if len(frame) < _HEADER + 1:
        raise FrameLengthError(f"truncated frame: {len(frame)} bytes, no length field")
    length = int.from_bytes(frame[5:7], "big")
    if length < 1 or length > MAX_BODY + 1:
        raise FrameLengthError(f"frame length field {length} out of range")
    if len(frame) < _HEADER + length:
        raise FrameLengthError(f"truncated frame: {len(frame) - _HEADER} of {length} bytes")
    if len(frame) > _HEADER + length:
        raise FrameLengthError(f"frame longer than its length field ({length})")
    if verify and checksum(frame[5:]) != 0:
        raise FrameChecksumError("frame checksum (XOR) mismatch")
    return frame[_HEADER:-1]


def parse_response(frame: bytes) -> Response:
    """Decode one complete response frame; ``ProtocolError`` on any malformation."""
    body = _split(frame)
    if len(body) < 3:
        raise ProtocolError(f"response too short for SW1 SW2 SW3: {len(body)} bytes")
    return Response(body[0], body[1], body[2], body[3:])


def parse_request(frame: bytes, *, verify: bool = True) -> Request:
    """Decode one complete request frame; ``ProtocolError`` on any malformation.

    ``verify=False`` accepts a bad checksum, as a lenient module does.
    """
    body = _split(frame, verify=verify)
    if len(body) < 2:
        raise ProtocolError(f"request too short for CMD PARA: {len(body)} bytes")
    return Request(body[:2], body[2:])


class FrameDecoder:
    """Incremental frame splitter over a byte stream, resynchronising on the preamble.

    ``feed`` bytes as they arrive; ``next_frame`` returns a complete, checksum-verified
    frame or ``None`` if more bytes are needed. Bytes before a preamble are dropped and
    counted in ``skipped``. A frame with a bad length or checksum raises
    ``ProtocolError`` after its first preamble byte is dropped, so the next call
    resynchronises on whatever follows.
    """

    def __init__(self, *, max_body: int = MAX_BODY, verify: bool = True) -> None:
        self._buf = bytearray()
        self._max_body = max_body
        self._verify = verify
        self.skipped = 0

    @property
    def pending(self) -> int:
        """Bytes buffered but not yet returned as a frame."""
        return len(self._buf)

    @property
    def partial(self) -> bool:
        """True if the buffer holds the start of a frame (a preamble) but not all of it."""
        return self._buf.startswith(PREAMBLE)

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._buf += data

    def clear(self) -> int:
        """Drop everything buffered (stale bytes before a new request); return the count."""
        dropped = len(self._buf)
        self._buf.clear()
        return dropped

    def next_frame(self) -> bytes | None:
        """The next complete frame, ``None`` if incomplete; ``ProtocolError`` if malformed."""
        start = self._buf.find(PREAMBLE)
        if start < 0:
            # Keep a tail that may be the beginning of a preamble split across reads.
            keep = len(PREAMBLE) - 1
            if len(self._buf) > keep:
                self.skipped += len(self._buf) - keep
                del self._buf[: len(self._buf) - keep]
            return None
        if start:
            self.skipped += start
            del self._buf[:start]
        if len(self._buf) < _HEADER:
            return None
        length = int.from_bytes(self._buf[5:7], "big")
        if length < 2 or length > self._max_body + 1:
            del self._buf[:1]
            raise FrameLengthError(f"frame length field {length} out of range")
        end = _HEADER + length
        if len(self._buf) < end:
            return None
        frame = bytes(self._buf[:end])
        if self._verify and checksum(frame[5:]) != 0:
            del self._buf[:1]
            raise FrameChecksumError("frame checksum (XOR) mismatch")
        del self._buf[:end]
        return frame
