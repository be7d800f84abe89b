"""Encryption at rest of personal data the server holds (transaction bodies).

``Vault`` keeps AES-256-GCM keys in a directory (0700, each key file 0600, named by its
key id); the newest key seals, every key opens, so rotation is "add a key" (``Vault.
rotate``). ``SealedJSON`` is the column type of ``inbox.body``: rows hold
``{"sealed": 1, "kid": ..., "ct": ...}`` and code reading ``entry.body`` sees the plain
dict. The process's vault is chosen once at start (``use_vault``), from
``GOVEDGE_PII_KEY_DIR``; ``piivault.purge.purge_bodies`` (imported apart: it needs the
models, which need this package) empties bodies after upstream confirmed
receipt plus ``GOVEDGE_PII_RETENTION_DAYS``.

``open_vault`` reads the keys from systemd credentials (``govedge-pii-keys_<id>.key`` in
``$CREDENTIALS_DIRECTORY``) when the service manager passed them, read-only
(``keysource``).

Errors: ``VaultError`` (a key file missing, unreadable or too open; a sealed value whose
key is gone or that fails authentication).
"""

from fleet_server.piivault.keysource import open_vault
from fleet_server.piivault.sealed import SealedJSON, current_vault, use_vault
from fleet_server.piivault.sealed_text import SealedText
from fleet_server.piivault.vault import Vault, VaultError

__all__ = [
    "SealedJSON",
    "SealedText",
    "Vault",
    "VaultError",
    "current_vault",
    "open_vault",
    "use_vault",
]
