"""Encryption at rest of personal data the server holds (transaction bodies, materials).

``Vault`` keeps AES-256-GCM keys in a directory (0700, each key file 0600, named by its
key id); the newest key seals, every key opens, so rotation is "add a key" (``Vault.
rotate``). The process's vault is chosen once at start (``use_vault``), from
``GOVEDGE_PII_KEY_DIR``; ``piivault.purge.purge_bodies`` (imported apart: it needs the
models, which need this package) empties bodies after upstream confirmed receipt plus
``GOVEDGE_PII_RETENTION_DAYS``.

Every sealed value is bound to its row: the row's table and identity are the AES-GCM
associated data, so a value copied into another row (another outlet's transaction, say)
fails to open, and so does a value that is not sealed at all — nothing passes through.

How to seal a column (what ``inbox.body`` does)::

    class InboxEntry(Base):
        sealed_body: Mapped[dict[str, Any]] = mapped_column("body", JSON)
        body = Sealed("sealed_body", table="inbox", key=("outlet_id", "tx_id"),
                      emptied_by="purged_at")

    entry = InboxEntry(outlet_id=..., tx_id=..., body={...})  # key before the value
    entry.body  # the plain value; VaultError if the column holds anything else

The column holds ``{"sealed": 2, "kid": ..., "ct": ...}``; the value may be any JSON
value (a dict, a string such as a note). ``key`` must name attributes known before the
value is set and never changed afterwards (not an autoincrement id). Without a model:
``current_vault().seal(value, context=row_context(table, *key))`` and
``current_vault().open(stored, context=...)``; bytes (material chunks) use
``seal_bytes``/``open_bytes`` with a context the same way.

``open_vault`` reads the keys from systemd credentials (``govedge-pii-keys_<id>.key`` in
``$CREDENTIALS_DIRECTORY``) when the service manager passed them, read-only
(``keysource``). Free-text columns (rectification follow-up notes) use ``SealedText``, a
column type sealed for its table (notes are not addressed by a stable key before their
row exists, so they are bound to the table, not the row).

Errors: ``VaultError`` (a key file missing, unreadable or too open; a stored value that
is not sealed, sealed for another row, fails authentication or whose key is gone).
"""

from fleet_server.piivault.keysource import open_vault
from fleet_server.piivault.sealed import Sealed, current_vault, use_vault
from fleet_server.piivault.sealed_text import SealedText
from fleet_server.piivault.vault import Vault, VaultError, row_context

__all__ = [
    "Sealed",
    "SealedText",
    "Vault",
    "VaultError",
    "current_vault",
    "open_vault",
    "row_context",
    "use_vault",
]
