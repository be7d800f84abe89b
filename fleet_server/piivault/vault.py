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
# The envelope's "sealed" marker: 1 = sealed before values were bound to their row
# (migration 0008 reseals those), 2 = bound to its row by ``context``.
UNBOUND: Final = 1
BOUND: Final = 2


def row_context(table: str, *key: str) -> bytes:
    """The associated data naming one row: its table and its identity, unambiguously
    encoded (a JSON array), e.g. ``row_context("inbox", outlet_id, tx_id)``."""
    return json.dumps([table, *key], ensure_ascii=False, separators=(",", ":")).encode()


def _bound(context: bytes) -> bytes:
    return _AAD + b"|" + context


class VaultError(Exception):
    """A key is missing, unreadable or too open, or a sealed value cannot be opened."""


class Vault:
    """The keys in ``directory``; created (with a first key) on first use, unless
    ``create`` is false: then a missing or empty directory is a ``VaultError`` and
    nothing is written (``piivault.guard``: a database holding sealed data)."""

    def __init__(self, directory: Path, *, create: bool = True) -> None:
        self.directory = directory
        self._create = create
        self._lock = threading.Lock()
        self._keys: dict[str, AESGCM] = {}
        self._current = ""
        self._load()

    def has_key(self, key_id: str) -> bool:
        """Whether this vault holds the key named ``key_id``."""
        return key_id in self._keys

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

    def seal(self, value: Any, *, context: bytes) -> dict[str, Any]:
        """``value`` (any JSON value) as ``{"sealed": 2, "kid": key id, "ct": base64(nonce +
        ciphertext)}``, with ``context`` (see ``row_context``) bound as associated data."""
        nonce = os.urandom(NONCE_BYTES)
        plain = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        sealed = self._keys[self._current].encrypt(nonce, plain, _bound(context))
        return {
            "sealed": BOUND,
            "kid": self._current,
            "ct": base64.b64encode(nonce + sealed).decode(),
        }

    def open(self, stored: Any, *, context: bytes) -> Any:
        """The plain value of a ``seal`` envelope sealed with this ``context``.

        ``VaultError`` for anything else: a value that is not sealed, one sealed before
        values were bound to their row (``fleet-server migrate`` reseals those), one
        sealed for another row, or one whose key is gone.
        """
        if not isinstance(stored, dict) or stored.get("sealed") != BOUND:
            raise VaultError("the stored value is not sealed for its row")
        return json.loads(self._decrypt(stored, _bound(context)))

    def open_unbound(self, stored: dict[str, Any]) -> Any:
        """A value sealed before values were bound to their row (``{"sealed": 1}``).

        For migrations only: nothing else may accept a value that names no row.
        """
        if stored.get("sealed") != UNBOUND:
            raise VaultError("the stored value is not an unbound sealed value")
        return json.loads(self._decrypt(stored, _AAD))

    def seal_unbound(self, value: Any) -> dict[str, Any]:
        """A ``{"sealed": 1}`` value bound to no row: for migrations going down only."""
        nonce = os.urandom(NONCE_BYTES)
        plain = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        sealed = self._keys[self._current].encrypt(nonce, plain, _AAD)
        return {
            "sealed": UNBOUND,
            "kid": self._current,
            "ct": base64.b64encode(nonce + sealed).decode(),
        }

    def _decrypt(self, stored: dict[str, Any], aad: bytes) -> bytes:
        key = self._keys.get(str(stored.get("kid")))
        if key is None:
            raise VaultError(f"no key {str(stored.get('kid'))[:16]!r} in {self.directory}")
        try:
            raw = base64.b64decode(str(stored["ct"]))
            return key.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)
        except (InvalidTag, ValueError, KeyError):
            raise VaultError("a sealed value failed authentication") from None

    def seal_bytes(self, data: bytes, *, context: bytes) -> bytes:
        """``data`` sealed as ``kid:`` + nonce + ciphertext; ``context`` is bound as AAD.

        For binary content (scanned materials): ``context`` names where the value
        belongs (e.g. outlet, material and chunk), so a value moved to another row
        fails authentication.
        """
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self._current].encrypt(nonce, data, _bound(context))
        return self._current.encode() + b":" + nonce + sealed

    def open_bytes(self, blob: bytes, *, context: bytes) -> bytes:
        """The plain bytes of a ``seal_bytes`` value; ``VaultError`` if it does not open."""
        key_id, sep, rest = bytes(blob).partition(b":")
        key = self._keys.get(key_id.decode("ascii", "replace")) if sep else None
        if key is None:
            raise VaultError(f"no key {key_id[:16]!r} in {self.directory}")
        try:
            return key.decrypt(rest[:NONCE_BYTES], rest[NONCE_BYTES:], _bound(context))
        except (InvalidTag, ValueError):
            raise VaultError("a sealed value failed authentication") from None

    def _load(self) -> None:
        if not self._create and not any(self.directory.glob(f"*{_SUFFIX}")):
            raise VaultError(f"no PII keys in {self.directory}")
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
