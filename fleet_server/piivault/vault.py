"""AES-256-GCM keys in a directory, by key id: the newest seals, any of them opens."""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
import threading
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
_AAD: Final = b"govedge-fleet-pii/v1"
_SUFFIX: Final = ".key"


class VaultError(Exception):
    """A key is missing, unreadable or too open, or a sealed value cannot be opened."""


class Vault:
    """The keys in ``directory``; created (with a first key) on first use."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._keys: dict[str, AESGCM] = {}
        self._current = ""
        self._load()

    @property
    def current_key_id(self) -> str:
        """The id of the key new values are sealed with."""
        return self._current

    def rotate(self) -> str:
        """Add a new key and seal with it from now on; old keys keep opening old rows."""
        with self._lock:
            key_id = f"{len(self._keys) + 1:04d}-{secrets.token_hex(4)}"
            _write_key(self.directory / f"{key_id}{_SUFFIX}", os.urandom(KEY_BYTES))
            self._keys[key_id] = AESGCM((self.directory / f"{key_id}{_SUFFIX}").read_bytes())
            self._current = key_id
            return key_id

    def seal(self, value: dict[str, Any]) -> dict[str, Any]:
        """``value`` as ``{"sealed": 1, "kid": key id, "ct": base64(nonce + ciphertext)}``."""
        nonce = os.urandom(NONCE_BYTES)
        plain = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        sealed = self._keys[self._current].encrypt(nonce, plain, _AAD)
        return {"sealed": 1, "kid": self._current, "ct": base64.b64encode(nonce + sealed).decode()}

    def open(self, stored: dict[str, Any]) -> dict[str, Any]:
        """The plain value of a sealed one; a value that is not sealed is returned as is."""
        if stored.get("sealed") != 1:
            return stored
        key = self._keys.get(str(stored.get("kid")))
        if key is None:
            raise VaultError(f"no key {stored.get('kid')!r} in {self.directory}")
        try:
            raw = base64.b64decode(str(stored["ct"]))
            plain = key.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _AAD)
        except (InvalidTag, ValueError, KeyError):
            raise VaultError("a sealed value failed authentication") from None
        value: dict[str, Any] = json.loads(plain)
        return value

    def seal_bytes(self, data: bytes, *, context: bytes) -> bytes:
        """``data`` sealed as ``kid:`` + nonce + ciphertext; ``context`` is bound as AAD.

        For binary content (scanned materials): ``context`` names where the value
        belongs (e.g. outlet, material and chunk), so a value moved to another row
        fails authentication.
        """
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self._current].encrypt(nonce, data, _AAD + b"|" + context)
        return self._current.encode() + b":" + nonce + sealed

    def open_bytes(self, blob: bytes, *, context: bytes) -> bytes:
        """The plain bytes of a ``seal_bytes`` value; ``VaultError`` if it does not open."""
        key_id, sep, rest = bytes(blob).partition(b":")
        key = self._keys.get(key_id.decode("ascii", "replace")) if sep else None
        if key is None:
            raise VaultError(f"no key {key_id[:16]!r} in {self.directory}")
        try:
            return key.decrypt(rest[:NONCE_BYTES], rest[NONCE_BYTES:], _AAD + b"|" + context)
        except (InvalidTag, ValueError):
            raise VaultError("a sealed value failed authentication") from None

    def _load(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise VaultError(f"key file {path} is readable by others; chmod 600 it")
            key = path.read_bytes()
            if len(key) != KEY_BYTES:
                raise VaultError(f"key file {path} is not {KEY_BYTES} bytes")
            self._keys[path.name.removesuffix(_SUFFIX)] = AESGCM(key)
            self._current = path.name.removesuffix(_SUFFIX)
        if not self._keys:
            self.rotate()


def _write_key(path: Path, key: bytes) -> None:
    """Create ``path`` 0600 with ``key`` (never overwrite), fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
