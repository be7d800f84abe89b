"""The simulated citizens' personal data, as needles to look for where it must not be.

Gathered from the device simulators themselves (``make_card`` of every card type, the
social-security card's defaults), never copied by hand, so a change to the simulated
citizens changes what the scans look for. Each value is searched in the forms it can
take on the way out: as text, JSON-escaped (``\\u5f20…``), as UTF-8, UTF-16-LE (the ID
card's own encoding) and GBK bytes, the ID number in both letter cases and its masked
middle alone (what ``3301**********1234`` hides), the name without the first character
(what ``张**`` hides), and the photo as the base64 and hex of its first bytes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from edge_agent.devices.id_card_reader.cards import make_card
from edge_agent.devices.id_card_reader.text import CardType, IdCard
from edge_agent.devices.social_security_card_reader.simulator import SocialSecurityCardData

# A photo prefix long enough never to occur by chance, a multiple of 3 so its base64
# is a prefix of the whole photo's base64.
PHOTO_PREFIX_BYTES = 24
MASKED_KEEP = 4  # the masking helpers keep the first and last four characters


def simulated_cards() -> list[IdCard]:
    """Every card the simulators make by default (``--simulate`` places the resident one)."""
    return [make_card(card_type) for card_type in CardType]


@dataclass(frozen=True)
class Needles:
    """Text needles (searched in decoded text) and byte needles (searched in raw bytes)."""

    text: dict[str, str] = field(default_factory=dict)  # needle -> what it is
    raw: dict[bytes, str] = field(default_factory=dict)
    photo_text: dict[str, str] = field(default_factory=dict)
    photo_raw: dict[bytes, str] = field(default_factory=dict)

    def find_text(self, haystack: str, *, photos_only: bool = False) -> list[str]:
        """What of the data ``haystack`` contains (labels of the needles found)."""
        table = self.photo_text if photos_only else {**self.text, **self.photo_text}
        return sorted({label for needle, label in table.items() if needle in haystack})

    def find_bytes(self, haystack: bytes, *, photos_only: bool = False) -> list[str]:
        """Like ``find_text`` over raw bytes (MQTT payloads), plus their UTF-8 text."""
        table = self.photo_raw if photos_only else {**self.raw, **self.photo_raw}
        found = {label for needle, label in table.items() if needle in haystack}
        found.update(self.find_text(haystack.decode("utf-8", "replace"), photos_only=photos_only))
        return sorted(found)


def _text_forms(value: str) -> Iterable[str]:
    yield value
    escaped = json.dumps(value)[1:-1]  # \uXXXX form of a JSON writer with ensure_ascii
    if escaped != value:
        yield escaped


def _add(needles: Needles, value: str | None, label: str, *, min_len: int = 2) -> None:
    if not value or len(value) < min_len:
        return
    for form in _text_forms(value):
        needles.text[form] = label
    for encoding in ("utf-8", "utf-16-le", "gbk"):
        try:
            needles.raw[value.encode(encoding)] = f"{label} ({encoding})"
        except UnicodeEncodeError:
            continue


def _add_id_number(needles: Needles, number: str, label: str) -> None:
    for form in {number, number.lower(), number.upper()}:
        _add(needles, form, label)
    middle = number[MASKED_KEEP:-MASKED_KEEP]  # what the masked form hides
    _add(needles, middle, f"{label} (unmasked middle)", min_len=8)


def _add_photo(needles: Needles, photo: bytes, label: str) -> None:
    head = photo[:PHOTO_PREFIX_BYTES]
    needles.photo_raw[head] = f"{label} (raw)"
    needles.photo_text[base64.b64encode(head).decode("ascii")] = f"{label} (base64)"
    needles.photo_text[head.hex()] = f"{label} (hex)"


def citizen_needles() -> Needles:
    """Names, ID numbers, addresses, pass numbers and photos of the simulated citizens."""
    needles = Needles()
    for card in simulated_cards():
        who = f"{card.card_type.value} card"
        _add(needles, card.name, f"{who}: name")
        if len(card.name) > 2:
            _add(needles, card.name[1:], f"{who}: name after its first character")
        _add(needles, card.english_name, f"{who}: English name")
        _add_id_number(needles, card.id_number, f"{who}: ID number")
        _add(needles, card.address, f"{who}: address")
        _add(needles, card.extra_address, f"{who}: extra address")
        _add(needles, card.pass_number, f"{who}: pass number")
        _add_photo(needles, card.photo, f"{who}: photo")
    ssc = SocialSecurityCardData()
    _add(needles, ssc.name, "social-security card: name")
    _add_id_number(needles, ssc.ssn, "social-security card: ID number")
    _add(needles, ssc.card_number, "social-security card: card number")
    return needles


def broken_check_digit(number: str) -> str:
    """The same ID number with a wrong check digit (what a typo at the counter gives)."""
    last = number[-1].upper()
    return number[:-1] + ("0" if last != "0" else "1")
