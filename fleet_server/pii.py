"""Masking of personal data for logs, API answers and the command line (design principle 4).

The same rule as the agent's ``edge_agent/devices/idnumber.py`` (the server does not
import the agent): an ID number keeps its first and last four characters
(``3301**********1234``), a name keeps its first character (``张**``).
"""

from __future__ import annotations

__all__ = ["mask_id_number", "mask_name"]

_KEEP = 4


def mask_id_number(number: str | None) -> str:
    """``330106199001011234`` → ``3301**********1234``; short values are fully hidden."""
    if not number:
        return ""
    if len(number) <= 2 * _KEEP:
        return "*" * len(number)
    return number[:_KEEP] + "*" * (len(number) - 2 * _KEEP) + number[-_KEEP:]


def mask_name(name: str | None) -> str:
    """``张三丰`` → ``张**``; a one-character name becomes ``*``."""
    if not name:
        return ""
    return name[0] + "*" * (len(name) - 1) if len(name) > 1 else "*"
