"""The outbox's exception tree; no message or attribute ever carries body content.

``sqlite3.Error`` and ``cryptography`` errors are translated into these at the boundary
(``store.py``, ``crypto.py``) with ``raise ... from``, so callers catch one root.
"""

from __future__ import annotations


class OutboxError(Exception):
    """Root of every error the outbox raises."""


class OutboxClosed(OutboxError):
    """The outbox is not open (used before ``__aenter__`` or after ``__aexit__``)."""


class OutboxFull(OutboxError):
    """The quota (or the disk) is full; the new entry was NOT accepted, nothing was lost.

    ``str()`` is the sentence a clerk app can show as is.
    """

    def __init__(
        self, *, waiting: int, used_bytes: int, quota_bytes: int, disk: bool = False
    ) -> None:
        where = "disk full" if disk else f"{used_bytes} of {quota_bytes} bytes used"
        super().__init__(
            f"outbox full: {waiting} transactions waiting for the network; "
            f"nothing accepted was lost ({where})"
        )
        self.waiting = waiting
        self.used_bytes = used_bytes
        self.quota_bytes = quota_bytes
        self.disk = disk


class InvalidEntry(OutboxError):
    """The entry cannot be stored: bad id or kind, body not JSON, or too big to send."""


class UnknownMaterial(OutboxError):
    """A transaction references a material that was never stored with ``put_material``."""

    def __init__(self, material_id: str) -> None:
        super().__init__(f"material {material_id} is not in the outbox")
        self.material_id = material_id


class CorruptEntry(OutboxError):
    """An entry failed authenticated decryption; it was quarantined, not deleted."""

    def __init__(self, tx_id: str) -> None:
        super().__init__(f"entry {tx_id} failed authentication and was quarantined")
        self.tx_id = tx_id


class KeyFileError(OutboxError):
    """The key file is unsafe, malformed, missing while needed, or not the outbox's key."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class StorageError(OutboxError):
    """SQLite failed (I/O error, damaged file, locked by another process, timeout).

    ``sqlite_error`` is SQLite's error name (``SQLITE_IOERR`` ...) when there is one.
    """

    def __init__(self, message: str, *, sqlite_error: str | None = None) -> None:
        super().__init__(message)
        self.sqlite_error = sqlite_error
