"""Where the outbox key is read from: a path of its own, a systemd credential, or the
data directory (the old place).

In order: ``outbox_key_file`` (``GOVEDGE_OUTBOX_KEY_FILE``) when set; else the systemd
credential ``govedge-outbox-key`` when ``$CREDENTIALS_DIRECTORY`` holds it (what
``LoadCredential=`` or ``LoadCredentialEncrypted=`` deliver; read-only, so it must exist
before the first start); else ``DATA_DIR/outbox.key``, created on first start. A key held
apart means a copy of the data directory alone opens no sealed entry (docs/security.md,
"What a stolen disk reveals").

An agent whose key lived in ``DATA_DIR/outbox.key`` and that is then given
``outbox_key_file`` (the provision playbook writes it, under ``keys_dir``) moves its key
there at start (``adopt_data_dir_key``), so the setting needs no hand move and a copy of
the data directory stops holding the key. A rolled-back older agent reads the same
setting and finds the key where the newer one left it.
"""

from __future__ import annotations

import filecmp
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from edge_agent.enrollment.move import move_key_file

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


Adoption = Literal["moved", "removed_copy", "differs", "none"]


def adopt_data_dir_key(data_dir: Path, location: KeyLocation) -> Adoption:
    """Move ``DATA_DIR/outbox.key`` to the ``outbox_key_file`` setting's path.

    ``moved`` when the setting's file did not exist yet; ``removed_copy`` when it holds
    the same key (a move a crash interrupted, or the playbook's copy); ``differs`` when
    it holds another key (both stay: the outbox's key check says which one is right, and
    a person removes the other); ``none`` when there is nothing to adopt.
    """
    old = data_dir / DATA_DIR_OUTBOX_KEY
    if location.source != "setting" or old.is_symlink() or not old.is_file():
        return "none"
    new = location.path
    if new.exists():
        if os.path.samefile(old, new):
            return "none"
        if not filecmp.cmp(old, new, shallow=False):
            return "differs"
        move_key_file(old, new)
        return "removed_copy"
    new.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    move_key_file(old, new)
    return "moved"
