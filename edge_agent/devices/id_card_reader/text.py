"""The 256-byte text block of Chinese ID cards and permits, and the card value object.

Four layouts share one block (docs/devices/id-card-reader.md), told apart by two bytes
at offset 248: resident ID (居民身份证), HK/Macau/Taiwan residence permit ``J``, foreigner permanent
residence card 2017 ``I`` and 2023 ``Y``. All text is UCS-2LE padded with spaces; dates
are ``YYYYMMDD``; valid-to may read ``长期`` (long-term, kept as ``None``). The encoder
is here too so the simulator builds blocks with exactly the parser's offsets.
``IdCard`` masks personal data in ``repr``/``str``; the photo stays raw WLT bytes.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field, replace
from typing import Any

from edge_agent.devices.base import ProtocolError
from govedge_wire.pii import (
    InvalidIdNumber,
    mask_address,
    mask_id_number,
    mask_name,
    validate_id_number,
)

__all__ = [
    "EXTRA_ADDRESS_SEPARATOR",
    "EXTRA_ADDRESS_SLOTS",
    "LONG_TERM",
    "NATIONS",
    "SEXES",
    "TEXT_BLOCK_SIZE",
    "CardDataError",
    "CardType",
    "IdCard",
    "decode_extra_addresses",
    "encode_extra_addresses",
    "encode_text_block",
    "parse_text_block",
]

TEXT_BLOCK_SIZE = 256
LONG_TERM = "长期"
# 追加住址 (30 03): up to four 70-byte slots, one appended address each (35 characters).
EXTRA_ADDRESS_SLOTS = 4
EXTRA_ADDRESS_SLOT_SIZE = 70
# Joins the slots into the one-string ``extra_address`` kept for older clients; a
# full-width semicolon, which no address on a card contains and Chinese text reads as
# a list separator.
EXTRA_ADDRESS_SEPARATOR = "\uff1b"

SEXES = {"0": "未知", "1": "男", "2": "女", "9": "未说明"}

# GB 3304 codes 01..56 in standard order, then 97 and 98.
_NATION_NAMES = (
    "汉",
    "蒙古",
    "回",
    "藏",
    "维吾尔",
    "苗",
    "彝",
    "壮",
    "布依",
    "朝鲜",
    "满",
    "侗",
    "瑶",
    "白",
    "土家",
    "哈尼",
    "哈萨克",
    "傣",
    "黎",
    "傈僳",
    "佤",
    "畲",
    "高山",
    "拉祜",
    "水",
    "东乡",
    "纳西",
    "景颇",
    "柯尔克孜",
    "土",
    "达斡尔",
    "仫佬",
    "羌",
    "布朗",
    "撒拉",
    "毛南",
    "仡佬",
    "锡伯",
    "阿昌",
    "普米",
    "塔吉克",
    "怒",
    "乌孜别克",
    "俄罗斯",
    "鄂温克",
    "德昂",
    "保安",
    "裕固",
    "京",
    "塔塔尔",
    "独龙",
    "鄂伦春",
    "赫哲",
    "门巴",
    "珞巴",
    "基诺",
)
NATIONS: dict[str, str] = {f"{i:02d}": n for i, n in enumerate(_NATION_NAMES, start=1)}
NATIONS |= {"97": "其他", "98": "外国血统中国籍人士"}


class CardDataError(ProtocolError):
    """The frame was intact but the card data in it is invalid (bad date, check digit)."""

    reason = "card_data"


class CardType(enum.StrEnum):
    """Which layout a text block uses; values are stable API strings."""

    RESIDENT = "resident"
    GAT_RESIDENCE = "gat_residence"  # 港澳台居民居住证, 'J'
    FOREIGNER_2017 = "foreigner_2017"  # 外国人永久居留身份证 (2017), 'I'
    FOREIGNER_2023 = "foreigner_2023"  # 外国人永久居留身份证 (2023), 'Y'


_DISCRIMINATORS = {
    "J": CardType.GAT_RESIDENCE,
    "I": CardType.FOREIGNER_2017,
    "Y": CardType.FOREIGNER_2023,
}
_MARKS = {v: k for k, v in _DISCRIMINATORS.items()}


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class IdCard:
    """One card as read; ``repr``/``str`` never show name, number, address or photo.

    ``valid_to`` is ``None`` for a long-term (长期) card. ``id_number`` is the 18-digit
    number for resident, J and Y cards and the 15-character permit number for I cards.
    Fields a layout lacks are ``None``.
    """

    card_type: CardType
    name: str
    sex: str  # GB/T 2261.1 code: "0", "1", "2", "9"
    birth_date: dt.date
    id_number: str
    valid_from: dt.date
    valid_to: dt.date | None
    nation: str | None = None  # GB 3304 code, resident cards only
    address: str | None = None
    authority: str | None = None
    english_name: str | None = None
    nationality: str | None = None  # ISO 3166 alpha-3, foreigner cards
    pass_number: str | None = None  # 通行证号码, J cards
    issue_count: str | None = None  # 签发次数 (J) or 换证次数 (Y)
    card_version: str | None = None  # I cards
    authority_code: str | None = None  # I cards
    extra_addresses: tuple[str, ...] = ()  # 追加住址 (30 03), one per slot, if read
    photo: bytes = field(default=b"")  # raw WLT, never decoded here
    fingerprint: bytes | None = None

    @property
    def long_term(self) -> bool:
        """True when the card never expires (valid-to reads 长期)."""
        return self.valid_to is None

    @property
    def sex_label(self) -> str:
        """The sex in words, e.g. 男."""
        return SEXES.get(self.sex, "未知")

    @property
    def nation_label(self) -> str | None:
        """The ethnicity in words, ``None`` if the card has none or the code is unknown."""
        return NATIONS.get(self.nation) if self.nation else None

    def masked(self) -> dict[str, Any]:
        """A summary safe for events, logs and screens: no full name, number or address."""
        return {
            "card_type": self.card_type.value,
            "holder": mask_name(self.name),
            "id_number": mask_id_number(self.id_number),
            "valid_to": self.valid_to.isoformat() if self.valid_to else "long-term",
            "has_fingerprint": bool(self.fingerprint),
        }

    @property
    def extra_address(self) -> str | None:
        """The extra addresses as one string, joined by U+FF1B (``None`` if there are none).

        Kept for clients written before ``extra_addresses``; split on
        ``EXTRA_ADDRESS_SEPARATOR`` or, better, read the tuple.
        """
        return EXTRA_ADDRESS_SEPARATOR.join(self.extra_addresses) or None

    def with_extra_addresses(self, extra: tuple[str, ...]) -> IdCard:
        """A copy carrying the extra addresses read by 30 03."""
        return replace(self, extra_addresses=tuple(extra))

    def __repr__(self) -> str:
        address = mask_address(self.address) if self.address else None
        return (
            f"IdCard(card_type={self.card_type.value}, name={mask_name(self.name)!r}, "
            f"id_number={mask_id_number(self.id_number)!r}, address={address!r}, "
            f"valid_to={self.valid_to.isoformat() if self.valid_to else 'long-term'}, "
            f"photo=<{len(self.photo)} bytes>, "
            f"fingerprint=<{len(self.fingerprint or b'')} bytes>)"
        )

    __str__ = __repr__


# ---------------------------------------------------------------- decoding


def _text(block: bytes, offset: int, size: int) -> str:
    raw = block[offset : offset + size]
    try:
        value = raw.decode("utf-16-le")
    except UnicodeDecodeError as exc:
        raise CardDataError(f"text at offset {offset} is not UCS-2LE") from exc
    return value.rstrip(" \x00")


def _date(value: str, what: str) -> dt.date:
    if len(value) != 8 or not value.isdigit():
        raise CardDataError(f"{what} is not an 8-digit YYYYMMDD date")
    try:
        return dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError as exc:
        raise CardDataError(f"{what} is not a calendar date") from exc


def _valid_to(value: str) -> dt.date | None:
    return None if value == LONG_TERM else _date(value, "valid-to date")


def _id18(value: str) -> str:
    try:
        return validate_id_number(value)
    except InvalidIdNumber as exc:
        raise CardDataError(f"card ID number rejected: {exc}") from exc


def _opt(value: str) -> str | None:
    return value or None


def card_type_of(block: bytes) -> CardType:
    """The layout of a text block, from the discriminator at offset 248."""
    mark = block[248:250]
    if mark[1:] == b"\x00":
        found = _DISCRIMINATORS.get(chr(mark[0]))
        if found is not None:
            return found
    return CardType.RESIDENT


def parse_text_block(
    block: bytes, *, photo: bytes = b"", fingerprint: bytes | None = None
) -> IdCard:
    """Decode a 256-byte text block; ``CardDataError`` (a ``ProtocolError``) if invalid."""
    if len(block) != TEXT_BLOCK_SIZE:
        raise CardDataError(f"text block is {len(block)} bytes, expected {TEXT_BLOCK_SIZE}")
    kind = card_type_of(block)
    t = _text
    if kind is CardType.FOREIGNER_2017:
        permit = t(block, 122, 30)
        if not permit.isalnum():
            raise CardDataError("permit number is empty or not alphanumeric")
        return IdCard(
            card_type=kind,
            english_name=t(block, 0, 120),
            name=t(block, 158, 30),
            sex=t(block, 120, 2),
            id_number=permit.upper(),
            nationality=_opt(t(block, 152, 6)),
            valid_from=_date(t(block, 188, 16), "valid-from date"),
            valid_to=_valid_to(t(block, 204, 16)),
            birth_date=_date(t(block, 220, 16), "birth date"),
            card_version=_opt(t(block, 236, 4)),
            authority_code=_opt(t(block, 240, 8)),
            photo=photo,
            fingerprint=fingerprint,
        )
    common: dict[str, Any] = {
        "card_type": kind,
        "name": t(block, 0, 30),
        "sex": t(block, 30, 2),
        "birth_date": _date(t(block, 36, 16), "birth date"),
        "id_number": _id18(t(block, 122, 36)),
        "valid_from": _date(t(block, 188, 16), "valid-from date"),
        "valid_to": _valid_to(t(block, 204, 16)),
        "photo": photo,
        "fingerprint": fingerprint,
    }
    if kind is CardType.FOREIGNER_2023:
        english = t(block, 52, 70) + t(block, 220, 22)
        return IdCard(
            **common,
            english_name=_opt(english),
            issue_count=_opt(t(block, 32, 4)),
            nationality=_opt(t(block, 242, 6)),
        )
    common |= {"address": _opt(t(block, 52, 70)), "authority": _opt(t(block, 158, 30))}
    if kind is CardType.GAT_RESIDENCE:
        return IdCard(
            **common, pass_number=_opt(t(block, 220, 18)), issue_count=_opt(t(block, 238, 4))
        )
    return IdCard(**common, nation=_opt(t(block, 32, 4)))


def decode_extra_addresses(data: bytes) -> tuple[str, ...]:
    """The 30 03 payload: up to four 70-byte UCS-2LE slots, one address each, in slot order.

    Blank slots (spaces or zero bytes) are left out; no payload is an empty tuple.
    """
    size = EXTRA_ADDRESS_SLOT_SIZE
    if len(data) % size or len(data) > size * EXTRA_ADDRESS_SLOTS:
        raise CardDataError(
            f"extra address payload is {len(data)} bytes, not 0-{EXTRA_ADDRESS_SLOTS} "
            f"slots of {size}"
        )
    parts = (_text(data, i, size) for i in range(0, len(data), size))
    return tuple(p for p in parts if p)


# ---------------------------------------------------------------- encoding


def _put(block: bytearray, offset: int, size: int, value: str | None) -> None:
    raw = (value or "").encode("utf-16-le")
    if len(raw) > size:
        raise ValueError(f"value too long for the {size}-byte field at {offset}")
    block[offset : offset + size] = raw + " ".encode("utf-16-le") * ((size - len(raw)) // 2)


def _ymd(day: dt.date) -> str:
    return day.strftime("%Y%m%d")


def encode_text_block(card: IdCard) -> bytes:
    """The 256-byte block a card of ``card.card_type`` holds (inverse of the parser)."""
    block = bytearray(" ".encode("utf-16-le") * (TEXT_BLOCK_SIZE // 2))
    valid_to = LONG_TERM if card.valid_to is None else _ymd(card.valid_to)
    kind = card.card_type
    if kind is CardType.FOREIGNER_2017:
        _put(block, 0, 120, card.english_name)
        _put(block, 120, 2, card.sex)
        _put(block, 122, 30, card.id_number)
        _put(block, 152, 6, card.nationality)
        _put(block, 158, 30, card.name)
        _put(block, 220, 16, _ymd(card.birth_date))
        _put(block, 236, 4, card.card_version)
        _put(block, 240, 8, card.authority_code)
    else:
        _put(block, 0, 30, card.name)
        _put(block, 30, 2, card.sex)
        _put(block, 36, 16, _ymd(card.birth_date))
        _put(block, 122, 36, card.id_number)
        if kind is CardType.FOREIGNER_2023:
            english = card.english_name or ""
            _put(block, 32, 4, card.issue_count)
            _put(block, 52, 70, english[:35])
            _put(block, 220, 22, english[35:])
            _put(block, 242, 6, card.nationality)
        else:
            _put(block, 52, 70, card.address)
            _put(block, 158, 30, card.authority)
            if kind is CardType.GAT_RESIDENCE:
                _put(block, 220, 18, card.pass_number)
                _put(block, 238, 4, card.issue_count)
            else:
                _put(block, 32, 4, card.nation)
    _put(block, 188, 16, _ymd(card.valid_from))
    _put(block, 204, 16, valid_to)
    if kind in _MARKS:
        _put(block, 248, 2, _MARKS[kind])
    return bytes(block)


def encode_extra_addresses(addresses: tuple[str, ...]) -> bytes:
    """30 03 payload: one space-padded 70-byte slot per address (≤ 35 characters, ≤ 4)."""
    if len(addresses) > EXTRA_ADDRESS_SLOTS:
        raise ValueError(f"a card holds at most {EXTRA_ADDRESS_SLOTS} extra addresses")
    out = bytearray()
    for address in addresses:
        chunk = bytearray(EXTRA_ADDRESS_SLOT_SIZE)
        _put(chunk, 0, EXTRA_ADDRESS_SLOT_SIZE, address)
        out += chunk
    return bytes(out)
