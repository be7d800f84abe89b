"""``SealedJSON``: a JSON column whose values are sealed by the process's vault."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import JSON
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from fleet_server.piivault.keysource import open_vault
from fleet_server.piivault.vault import Vault

_DEFAULT_DIR = "./fleet-pii-keys"
_lock = threading.Lock()
_vault: list[Vault] = []  # at most one: the process's vault, chosen once at start


def use_vault(vault: Vault) -> None:
    """Make ``vault`` the one every ``SealedJSON`` column uses from now on."""
    with _lock:
        _vault[:] = [vault]


def current_vault() -> Vault:
    """The process's vault; when none was chosen, opened from systemd credentials or
    ``GOVEDGE_PII_KEY_DIR`` (``keysource``)."""
    with _lock:
        if not _vault:
            key_dir = Path(os.environ.get("GOVEDGE_PII_KEY_DIR", _DEFAULT_DIR))
            _vault.append(open_vault(key_dir))
        return _vault[0]


class SealedJSON(TypeDecorator[dict[str, Any]]):
    """JSON sealed with AES-256-GCM at rest; an empty dict (a purged body) stays plain."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: dict[str, Any] | None, dialect: Dialect) -> Any:
        """Seal on the way into the database."""
        if not value:
            return value
        return current_vault().seal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        """Open on the way out."""
        if not isinstance(value, dict):
            return value
        return current_vault().open(value)
