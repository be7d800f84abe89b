"""``Sealed``: a model attribute whose value is stored sealed, bound to its row."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, overload

from fleet_server.piivault.keysource import open_vault
from fleet_server.piivault.vault import Vault, VaultError, row_context

_lock = threading.Lock()
_vault: list[Vault] = []  # at most one: the process's vault, chosen once at start


def use_vault(vault: Vault) -> None:
    """Make ``vault`` the one every ``Sealed`` attribute uses from now on."""
    with _lock:
        _vault[:] = [vault]


def vault_chosen() -> bool:
    """Whether this process has its vault (``use_vault`` or a first ``current_vault``)."""
    with _lock:
        return bool(_vault)


def default_key_dir() -> Path:
    """The key directory the settings name (``GOVEDGE_PII_KEY_DIR``, else
    ``fleet-pii-keys`` under ``GOVEDGE_STATE_DIR``, else under the working directory)."""
    explicit = os.environ.get("GOVEDGE_PII_KEY_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("GOVEDGE_STATE_DIR") or ".") / "fleet-pii-keys"


def current_vault() -> Vault:
    """The process's vault; when none was chosen, opened from systemd credentials or
    ``default_key_dir`` (``keysource``). Code that may meet a database with sealed data
    chooses first, through ``piivault.guard`` (``fleet_server.migrate`` does)."""
    with _lock:
        if not _vault:
            _vault.append(open_vault(default_key_dir()))
        return _vault[0]


class Sealed:
    """The plain view of a JSON column that holds a ``Vault.seal`` envelope.

    ``column`` is the mapped attribute holding the envelope; ``table`` and ``key`` (the
    attributes naming the row, e.g. ``("outlet_id", "tx_id")``) make the associated
    data, so an envelope copied into another row fails to open (``VaultError``), as
    does a value that is not sealed at all. The key attributes must be set before the
    value (the models' keyword constructor sets attributes in the order given). With
    ``emptied_by``, a row whose attribute of that name is set (e.g. ``purged_at``)
    reads as ``{}`` whatever the column holds. How ``inbox.body`` is declared::

        sealed_body: Mapped[dict[str, Any]] = mapped_column("body", JSON)
        body = Sealed("sealed_body", table="inbox", key=("outlet_id", "tx_id"),
                      emptied_by="purged_at")

    The key must never change once set (so not an autoincrement id). Without a model:
    ``current_vault().seal(value, context=row_context(table, *key))`` and ``open``.
    """

    def __init__(
        self, column: str, *, table: str, key: tuple[str, ...], emptied_by: str | None = None
    ) -> None:
        self.column = column
        self.table = table
        self.key = key
        self.emptied_by = emptied_by

    def context(self, row: object) -> bytes:
        """The associated data of ``row``; ``VaultError`` while its key is incomplete."""
        parts = [getattr(row, name, None) for name in self.key]
        if any(part is None for part in parts):
            raise VaultError(f"set {', '.join(self.key)} before a sealed value of {self.table}")
        return row_context(self.table, *(str(part) for part in parts))

    @overload
    def __get__(self, row: None, owner: type) -> Sealed: ...
    @overload
    def __get__(self, row: object, owner: type) -> Any: ...
    def __get__(self, row: object | None, owner: type) -> Any:
        if row is None:
            return self
        if self.emptied_by is not None and getattr(row, self.emptied_by) is not None:
            return {}
        return current_vault().open(getattr(row, self.column), context=self.context(row))

    def __set__(self, row: object, value: Any) -> None:
        setattr(row, self.column, current_vault().seal(value, context=self.context(row)))
