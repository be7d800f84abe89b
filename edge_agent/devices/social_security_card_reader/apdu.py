"""APDUs and record layout of the social-security card (社会保障卡, SSSE application).

The card holds an ``SSSE`` application (AID ``sx1.sh.社会保障`` in GBK). ``EF05`` holds the
card identification code (卡识别码, record 01) and the card number (卡号, record 07);
``EF06`` the social-security number (社会保障号码 = the ID number, record 08) and the
name (姓名, record 09). Records are ``tag len value`` with the tag equal to the record
number. READ RECORD comes in two styles that cards in the field both accept: SFI
addressing (``00 B2 07 2C 00``) and current-EF (``00 B2 07 04 0B``); see
docs/devices/social-security-card.md.
The record numbers and encodings beyond the SELECT/READ RECORD styles follow common
reader code and were not checked against a card (UNV).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "SSSE_AID",
    "SW_OK",
    "ReadStyle",
    "Record",
    "StatusWord",
    "parse_record",
    "read_record",
    "select_aid",
    "select_file",
    "status_meaning",
]

SSSE_AID = bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF")  # "sx1.sh.社会保障", GBK
SW_OK = 0x9000


class StatusWord(enum.IntEnum):
    """The status words the driver and the virtual card use (ISO 7816-4)."""

    OK = 0x9000
    WRONG_LENGTH = 0x6700
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    WRONG_P1P2 = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00


class ReadStyle(enum.StrEnum):
    """How READ RECORD addresses the file: by short file id, or the selected EF."""

    SFI = "sfi"  # 00 B2 rr (sfi<<3|4) 00
    CURRENT = "current"  # 00 B2 rr 04 Le


class Record(enum.IntEnum):
    """Record numbers (also the TLV tags) of the fields govedge reads."""

    CARD_ID_CODE = 0x01  # EF05 卡识别码, 16 bytes; first 3 bytes BCD = issuing region
    CARD_NUMBER = 0x07  # EF05 卡号, 9 ASCII characters
    SSN = 0x08  # EF06 社会保障号码, 18 ASCII characters
    NAME = 0x09  # EF06 姓名, 30 bytes GBK, space or zero padded


# Which elementary file (short file id) holds each record, and its value length.
RECORD_FILE = {
    Record.CARD_ID_CODE: 0x05,
    Record.CARD_NUMBER: 0x05,
    Record.SSN: 0x06,
    Record.NAME: 0x06,
}
RECORD_SIZE = {Record.CARD_ID_CODE: 16, Record.CARD_NUMBER: 9, Record.SSN: 18, Record.NAME: 30}

_MEANINGS = {
    0x9000: "success",
    0x6700: "wrong length",
    0x6A82: "file or application not found",
    0x6A83: "record not found",
    0x6B00: "wrong parameters P1-P2",
    0x6D00: "instruction not supported",
    0x6E00: "class not supported",
}


def status_meaning(sw: int) -> str:
    """What a status word means, for messages."""
    if sw >> 8 == 0x6C:
        return f"wrong Le, card has {sw & 0xFF} bytes"
    return _MEANINGS.get(sw, f"status {sw:04X}")


def select_aid(aid: bytes = SSSE_AID) -> bytes:
    """SELECT by name: ``00 A4 04 00 Lc AID``."""
    return bytes([0x00, 0xA4, 0x04, 0x00, len(aid)]) + aid


def select_file(sfi: int) -> bytes:
    """SELECT an EF of the current application by file id ``EF0n``: ``00 A4 02 00 02 EF 0n``."""
    return bytes([0x00, 0xA4, 0x02, 0x00, 0x02, 0xEF, sfi])


def read_record(record: int, *, style: ReadStyle, sfi: int, le: int | None = None) -> bytes:
    """READ RECORD ``record``; SFI style ``00 B2 rr (sfi<<3|4) 00``, current ``00 B2 rr 04 Le``."""
    if style is ReadStyle.SFI:
        return bytes([0x00, 0xB2, record, (sfi << 3) | 0x04, 0x00 if le is None else le])
    size = RECORD_SIZE.get(Record(record), 0) + 2 if le is None else le
    return bytes([0x00, 0xB2, record, 0x04, size])


@dataclass(frozen=True, slots=True)
class TlvRecord:
    """One decoded record: its tag and raw value."""

    tag: int
    value: bytes


def parse_record(data: bytes, *, expected_tag: int) -> TlvRecord:
    """Decode ``tag len value``; ``ValueError`` if the tag or length is wrong."""
    if len(data) < 2:
        raise ValueError(f"record {expected_tag:02X} is {len(data)} bytes, too short for TLV")
    tag, length = data[0], data[1]
    if tag != expected_tag:
        raise ValueError(f"record tag {tag:02X}, expected {expected_tag:02X}")
    if len(data) < 2 + length:
        raise ValueError(f"record {tag:02X} declares {length} bytes, holds {len(data) - 2}")
    return TlvRecord(tag, bytes(data[2 : 2 + length]))
