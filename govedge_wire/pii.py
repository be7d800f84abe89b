"""Chinese citizen ID numbers (GB 11643) and the one masking rule for personal data.

The 18th character of an ID number is an ISO 7064 MOD 11-2 check digit over the first
17; a wrong one means the number was misread or forged, so readers and the counter's
forms verify it. The masking helpers are used by the agent and the fleet server alike
for logs, API answers and the command line (``3301**********1234``, ``张**``): both
import this module, so the rule lives in one place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "InvalidIdNumber",
    "check_digit",
    "field_path",
    "is_valid_id_number",
    "make_id_number",
    "mask_address",
    "mask_id_number",
    "mask_name",
    "mask_text",
    "validate_id_number",
]

# Weights 2^(17-i) mod 11 for positions 1..17 (GB 11643-1999 section 7).
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
_SHAPE = re.compile(r"^[0-9]{17}[0-9X]$")
# In free text (log lines, command output): an 18-character run that is a valid ID
# number, and a mainland mobile number, each standing alone among digits.
_ID_IN_TEXT = re.compile(r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9])")
_MOBILE_IN_TEXT = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")
# What a field name looks like; a key of any other shape in a validation error's
# location is the caller's data (an ID number or a name where a field name goes).
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}")
_DIGIT_RUN = re.compile(r"[0-9]{6}")
MASKED_KEY = "*"


class InvalidIdNumber(ValueError):
    """An ID number has the wrong shape or a wrong check digit (message holds no PII)."""


def check_digit(first17: str) -> str:
    """The MOD 11-2 check character (``0``-``9`` or ``X``) for 17 leading digits."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise InvalidIdNumber("an ID number body must be 17 ASCII digits")
    total = sum(int(ch) * w for ch, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def validate_id_number(number: str) -> str:
    """Return ``number`` normalised (upper-case ``X``); raise ``InvalidIdNumber`` if bad.

    The error message says what is wrong but never repeats the number itself.
    """
    normalised = number.strip().upper()
    if not _SHAPE.match(normalised):
        raise InvalidIdNumber(
            f"ID number must be 17 digits and a check character, got {len(normalised)} chars"
        )
    expected = check_digit(normalised[:17])
    if normalised[17] != expected:
        raise InvalidIdNumber("ID number check digit (GB 11643 / ISO 7064 MOD 11-2) is wrong")
    return normalised


def is_valid_id_number(number: str) -> bool:
    """True if ``number`` is 18 characters with a correct check digit."""
    try:
        validate_id_number(number)
    except InvalidIdNumber:
        return False
    return True


def make_id_number(region: str, birth: str, sequence: int) -> str:
    """Build a valid 18-digit number: 6-digit region, ``YYYYMMDD`` birth, 3-digit sequence.

    Used by simulators and fixtures to make numbers that pass the check digit.
    """
    body = f"{region}{birth}{sequence % 1000:03d}"
    return body + check_digit(body)


def mask_id_number(number: str | None) -> str:
    """``330106199001011234`` → ``3301**********1234``: keep the first 4 and last 4."""
    if not number:
        return ""
    if len(number) <= 8:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


def mask_name(name: str | None) -> str:
    """``张三丰`` → ``张**``; an English name keeps its first letter only."""
    if not name:
        return ""
    return name[0] + "*" * (len(name) - 1) if len(name) > 1 else "*"


def mask_address(address: str | None) -> str:
    """Hide the whole address but its first 3 characters (the province, roughly)."""
    if not address:
        return ""
    return address[:3] + "***"


def mask_text(text: str) -> str:
    """Free text with every valid ID number and mobile number in it masked.

    For text that was not written through the masking helpers (a journal, a command's
    output): ``330106199001011234`` → ``3301**********1234``, ``13812345678`` →
    ``138****5678``. An 18-digit run whose check digit is wrong is left alone (an order
    or serial number, not an ID). Names and addresses in free text cannot be told from
    other words; the agent never logs them.
    """

    def id_number(match: re.Match[str]) -> str:
        value = match.group(0).upper()
        return mask_id_number(value) if is_valid_id_number(value) else match.group(0)

    text = _ID_IN_TEXT.sub(id_number, text)
    return _MOBILE_IN_TEXT.sub(lambda m: m.group(0)[:3] + "****" + m.group(0)[-4:], text)


def field_path(loc: Iterable[object]) -> list[str]:
    """A validation error's location (pydantic's ``loc``) safe to answer or log.

    A location names the caller's keys as well as the model's fields: an unknown key
    (``extra_forbidden``) or a dict's key is whatever the caller sent, and an app that
    puts an ID number or a name where a field name goes would have it echoed back. Parts
    shaped like a field name (ASCII, starting with a letter, no run of six digits) stay,
    so a misspelt field is still named; list indices stay; any other part is ``*``.
    """
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            parts.append(str(part))
        elif isinstance(part, str) and (
            part == "[key]" or (_FIELD_NAME.fullmatch(part) and not _DIGIT_RUN.search(part))
        ):
            parts.append(part)
        else:
            parts.append(MASKED_KEY)
    return parts
