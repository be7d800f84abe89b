"""The config-signing public keys the agent trusts (docs/config.md, "Keys and rotation").

They arrive with the enrollment and renewal answers (``config_keys``: key id → base64
raw 32-byte Ed25519 public key) and are kept beside the certificate in
``config-keys.json`` of the keys dir (the ``keys_dir`` setting), written atomically.
An outlet provisioned without enrollment names a file of the same shape in the
``config_keys_file`` setting. Without any key the agent trusts no config.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# The parsing lives in the wire package: the fleet server checks releases with it too.
from govedge_wire.config.public_keys import ConfigKeysError as ConfigKeysError
from govedge_wire.config.public_keys import parse_config_keys as parse_config_keys

KEYS_FILE: Final = "config-keys.json"


def keys_path(keys_dir: Path) -> Path:
    """Where enrollment and renewal keep the keys: beside the certificate."""
    return keys_dir / KEYS_FILE


def store_config_keys(keys_dir: Path, raw: object) -> int:
    """Check and write the answer's ``config_keys`` atomically; how many were stored."""
    keys = parse_config_keys(raw)
    assert isinstance(raw, Mapping)
    write_atomically(keys_path(keys_dir), json.dumps(dict(raw), sort_keys=True).encode())
    return len(keys)


def load_config_keys(keys_dir: Path, extra_file: Path | None) -> dict[str, Ed25519PublicKey]:
    """The keys beside the certificate plus those of ``extra_file`` (if set).

    A missing file holds no keys; an unreadable or malformed one is ``ConfigKeysError``.
    """
    keys: dict[str, Ed25519PublicKey] = {}
    for path in (keys_path(keys_dir), extra_file):
        if path is None or (path == keys_path(keys_dir) and not path.exists()):
            continue
        try:
            raw = json.loads(path.read_bytes())
        except OSError as exc:
            raise ConfigKeysError(f"cannot read config keys file {path}: {exc.strerror}") from None
        except (ValueError, UnicodeDecodeError):
            raise ConfigKeysError(f"config keys file {path} is not JSON") from None
        try:
            keys |= parse_config_keys(raw)
        except ConfigKeysError as exc:
            raise ConfigKeysError(f"config keys file {path}: {exc}") from None
    return keys


def write_atomically(path: Path, data: bytes) -> None:
    """Temp file, fsync, rename, fsync the directory: after a crash, old or new, whole."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
