"""The config-signing key: one Ed25519 private key held apart from the database.

Read from ``GOVEDGE_CONFIG_SIGNING_KEY`` (a PEM file, mode 0600) or, when that is not
set, the systemd credential ``govedge-config-signing-key`` in ``$CREDENTIALS_DIRECTORY``.
A key file readable by group or others is refused, like the PII keys. Extra public
keys (``GOVEDGE_CONFIG_PUBLIC_KEYS_FILE``, PEM blocks one after the other) are handed to
agents beside the signing key's own, for rotation (docs/config.md, "Keys and rotation").
Without a signing key the server runs and publishes no configs.
"""

from __future__ import annotations

import base64
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from fleet_server.settings import Settings
from govedge_wire.config import key_id_for

CREDENTIALS_DIRECTORY_ENV: Final = "CREDENTIALS_DIRECTORY"
SIGNING_KEY_CREDENTIAL: Final = "govedge-config-signing-key"
_PEM_BLOCK = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)


class ConfigKeyError(Exception):
    """A configured key file is missing, unreadable, readable by others or not Ed25519."""


@dataclass(frozen=True, slots=True)
class ConfigKeys:
    """The signing key (None: not configured) and every public key agents should hold."""

    private_key: Ed25519PrivateKey | None = None
    key_id: str | None = None
    source: Path | None = None
    # key id → public key: the signing key's own first, then the extra ones.
    public: dict[str, Ed25519PublicKey] = field(default_factory=dict)

    @property
    def can_sign(self) -> bool:
        """True when a signing key is loaded."""
        return self.private_key is not None

    def public_b64(self) -> dict[str, str]:
        """``{key_id: base64 of the raw 32-byte key}``: the enrollment answer's ``config_keys``."""
        return {
            key_id: base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
            for key_id, key in self.public.items()
        }


def signing_key_path(settings: Settings) -> Path | None:
    """Where the signing key is: the setting, else the systemd credential, else None."""
    if settings.config_signing_key is not None:
        return settings.config_signing_key
    directory = os.environ.get(CREDENTIALS_DIRECTORY_ENV)
    if directory:
        candidate = Path(directory) / SIGNING_KEY_CREDENTIAL
        if candidate.is_file():
            return candidate
    return None


def read_private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PEM file ``path``; ``ConfigKeyError`` otherwise."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigKeyError(
                f"config signing key {path} is readable by group or others; chmod 600 it"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigKeyError(f"cannot read config signing key {path}: {exc.strerror}") from None
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigKeyError(f"config signing key {path} is not an unencrypted PEM key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigKeyError(f"config signing key {path} is not an Ed25519 key")
    return key


def read_public_keys(path: Path) -> list[Ed25519PublicKey]:
    """Every PEM public key in ``path`` (all must be Ed25519); ``ConfigKeyError`` otherwise."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigKeyError(f"cannot read config public keys {path}: {exc.strerror}") from None
    blocks = _PEM_BLOCK.findall(data)
    if not blocks:
        raise ConfigKeyError(f"{path} holds no PEM public key")
    keys = []
    for number, block in enumerate(blocks, start=1):
        try:
            key = load_pem_public_key(block)
        except ValueError:
            raise ConfigKeyError(f"{path}: public key {number} is not valid PEM") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigKeyError(f"{path}: public key {number} is not an Ed25519 key")
        keys.append(key)
    return keys


def load_config_keys(settings: Settings) -> ConfigKeys:
    """The keys as configured; ``ConfigKeyError`` when a configured file is unusable."""
    public: dict[str, Ed25519PublicKey] = {}
    private_key = key_id = None
    path = signing_key_path(settings)
    if path is not None:
        private_key = read_private_key(path)
        key_id = key_id_for(private_key.public_key())
        public[key_id] = private_key.public_key()
    if settings.config_public_keys_file is not None:
        for key in read_public_keys(settings.config_public_keys_file):
            public.setdefault(key_id_for(key), key)
    return ConfigKeys(private_key=private_key, key_id=key_id, source=path, public=public)


def generate_key_file(path: Path) -> str:
    """Write a new Ed25519 private key to ``path`` (mode 0600, never over an existing
    file); return its key id."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigKeyError(f"{path} exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise ConfigKeyError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
        out.flush()
        os.fsync(out.fileno())
    return key_id_for(key.public_key())


def public_pem(key: Ed25519PublicKey) -> str:
    """The PEM text of a public key (for the extra public keys file)."""
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
