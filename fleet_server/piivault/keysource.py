"""Where the PII keys come from: systemd credentials, or the key directory.

When ``$CREDENTIALS_DIRECTORY`` holds credentials named ``govedge-pii-keys_<key id>.key``
(``LoadCredential=govedge-pii-keys:/etc/govedge/pii-keys`` loads every file of that
directory under this name; ``LoadCredentialEncrypted=`` one by one), the keys are read
from there and nothing else: the vault is read-only (rotate in the source directory and
restart). Otherwise ``GOVEDGE_PII_KEY_DIR``, created with a first key when empty.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fleet_server.piivault.vault import KEY_BYTES, Vault, VaultError

CREDENTIALS_DIRECTORY_ENV: Final = "CREDENTIALS_DIRECTORY"
PII_KEYS_CREDENTIAL: Final = "govedge-pii-keys"
_PREFIX: Final = f"{PII_KEYS_CREDENTIAL}_"
_SUFFIX: Final = ".key"


def credential_key_files() -> dict[str, Path]:
    """Key id → credential file, for every PII key the service manager passed (oldest
    first: key ids sort by creation)."""
    directory = os.environ.get(CREDENTIALS_DIRECTORY_ENV)
    if not directory or not Path(directory).is_dir():
        return {}
    found = sorted(
        path
        for path in Path(directory).iterdir()
        if path.name.startswith(_PREFIX) and path.name.endswith(_SUFFIX) and path.is_file()
    )
    return {path.name.removeprefix(_PREFIX).removesuffix(_SUFFIX): path for path in found}


class CredentialVault(Vault):
    """A vault whose keys are systemd credentials: read-only, never created here."""

    def __init__(self, files: dict[str, Path]) -> None:
        self._files = files
        super().__init__(next(iter(files.values())).parent)

    def rotate(self) -> str:
        """Refused: credentials are read-only; add the key at their source, restart."""
        raise VaultError(
            "PII keys come from systemd credentials (read-only): add the new key file to "
            "the credential's source directory and restart the service"
        )

    def _load(self) -> None:
        for key_id, path in self._files.items():
            if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise VaultError(f"key file {path} is readable by others; chmod 600 it")
            key = path.read_bytes()
            if len(key) != KEY_BYTES:
                raise VaultError(f"key file {path} is not {KEY_BYTES} bytes")
            self._keys[key_id] = AESGCM(key)
            self._current = key_id


def open_vault(key_dir: Path, *, create: bool = True) -> Vault:
    """The vault of this process: credentials if passed, else ``key_dir`` (made with a
    first key when empty, unless ``create`` is false: ``piivault.guard``)."""
    files = credential_key_files()
    if files:
        return CredentialVault(files)
    return Vault(key_dir, create=create)
