"""Encryption at rest of the personal data the server holds (bodies, materials, notes).

``Vault`` holds AES-256-GCM keys (the newest seals, every key opens); ``Sealed`` and
``SealedText`` seal model columns, each value bound to its row or table by the associated
data; ``transactions.purge`` empties delivered bodies.
Keys, rotation, systemd credentials and retention: docs/security.md, "PII at rest".

Exception tree::

    VaultError    a key file missing, unreadable or too open; a stored value not sealed,
                  sealed for another row, failing authentication, or whose key is gone
"""

from fleet_server.piivault.guard import holds_sealed_data, open_vault_for
from fleet_server.piivault.keysource import open_vault
from fleet_server.piivault.sealed import (
    Sealed,
    current_vault,
    default_key_dir,
    use_vault,
    vault_chosen,
)
from fleet_server.piivault.sealed_text import SealedText
from fleet_server.piivault.vault import Vault, VaultError, row_context

__all__ = [
    "Sealed",
    "SealedText",
    "Vault",
    "VaultError",
    "current_vault",
    "default_key_dir",
    "holds_sealed_data",
    "open_vault",
    "open_vault_for",
    "row_context",
    "use_vault",
    "vault_chosen",
]
