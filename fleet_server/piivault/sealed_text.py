"""``SealedText``: a text column (free-text notes that may name a citizen) sealed by the
process's vault. The column holds the JSON of ``Vault.seal({"text": value})`` with the
column's table and name as associated data; reading a value that is not sealed, or sealed
for another column, fails (``VaultError``) instead of passing plain text through."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from fleet_server.piivault.sealed import current_vault
from fleet_server.piivault.vault import VaultError, row_context

__all__ = ["SealedText", "is_sealed_text", "open_text", "seal_text"]

_CONTEXT = row_context("rectification_follow_ups", "note")


def seal_text(value: str) -> str:
    """``value`` sealed with the vault's current key, as stored in the column."""
    return json.dumps(
        current_vault().seal({"text": value}, context=_CONTEXT), separators=(",", ":")
    )


def is_sealed_text(stored: str) -> bool:
    """Whether ``stored`` looks like a ``seal_text`` value (not plain text)."""
    try:
        value = json.loads(stored)
    except ValueError:
        return False
    return isinstance(value, dict) and "sealed" in value and "ct" in value


def open_text(stored: str) -> str:
    """The plain text of a ``seal_text`` value; ``VaultError`` for anything else."""
    if not is_sealed_text(stored):
        raise VaultError("a sealed text column holds a value that is not sealed")
    value: dict[str, Any] = current_vault().open(json.loads(stored), context=_CONTEXT)
    text = value.get("text")
    if not isinstance(text, str):
        raise VaultError("a sealed text value has no text")
    return text


class SealedText(TypeDecorator[str]):
    """Text sealed with AES-256-GCM at rest (``seal_text``/``open_text``)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        """Seal on the way into the database."""
        return None if value is None else seal_text(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        """Open on the way out."""
        return None if value is None else open_text(str(value))
