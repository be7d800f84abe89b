"""Where the outbox key is read from: a path of its own, a systemd credential, or the
data directory (the old place).

In order: ``outbox_key_file`` (``GOVEDGE_OUTBOX_KEY_FILE``) when set; else the systemd
credential ``govedge-outbox-key`` when ``$CREDENTIALS_DIRECTORY`` holds it (what
``LoadCredential=`` or ``LoadCredentialEncrypted=`` deliver; read-only, so it must exist
before the first start); else ``DATA_DIR/outbox.key``, created on first start. A key held
apart means a copy of the data directory alone opens no sealed entry (docs/security.md,
"What a stolen disk reveals").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

CREDENTIALS_DIRECTORY_ENV: Final = "CREDENTIALS_DIRECTORY"
OUTBOX_KEY_CREDENTIAL: Final = "govedge-outbox-key"
DATA_DIR_OUTBOX_KEY: Final = "outbox.key"


def systemd_credential(name: str) -> Path | None:
    """``$CREDENTIALS_DIRECTORY/name`` if the service manager passed that credential."""
    directory = os.environ.get(CREDENTIALS_DIRECTORY_ENV)
    if not directory:
        return None
    path = Path(directory) / name
    return path if path.is_file() else None


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyLocation:
    """The key file to use and where that choice came from (for the start-up log)."""

    path: Path
    source: Literal["setting", "credential", "data_dir"]


def outbox_key_location(*, data_dir: Path, outbox_key_file: Path | None) -> KeyLocation:
    """The outbox key's file, by the rules in this module's docstring."""
    if outbox_key_file is not None:
        return KeyLocation(path=outbox_key_file, source="setting")
    credential = systemd_credential(OUTBOX_KEY_CREDENTIAL)
    if credential is not None:
        return KeyLocation(path=credential, source="credential")
    return KeyLocation(path=data_dir / DATA_DIR_OUTBOX_KEY, source="data_dir")
