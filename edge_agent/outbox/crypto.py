"""AES-256-GCM sealing of entry bodies and the key file that holds the key.

Each entry gets a fresh random 96-bit nonce. The associated data binds the ciphertext
to its row (``tx_id``, priority class and kind), so a body moved to another row, or a
row whose class was edited, fails authentication instead of being sent as someone
else's transaction. The key file is 32 random bytes, mode 0600, created on first start.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edge_agent.outbox.errors import KeyFileError

KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
_AAD_PREFIX: Final = b"govedge-outbox/v1"
# Sealed under the key at database creation; a different key then fails at open time.
KEY_CHECK_AAD: Final = b"govedge-outbox/v1|key-check"
KEY_CHECK_PLAINTEXT: Final = b"govedge outbox key check"


class Unsealable(Exception):
    """Internal: authentication failed. The store turns it into ``CorruptEntry``."""


def entry_aad(tx_id: str, priority_class: int, tx_kind: str) -> bytes:
    """Associated data binding a body to its row."""
    return b"|".join((_AAD_PREFIX, tx_id.encode(), str(priority_class).encode(), tx_kind.encode()))


def receipt_aad(tx_id: str, tx_kind: str) -> bytes:
    """Associated data binding a sealed idempotency receipt to its row."""
    return b"|".join((_AAD_PREFIX, b"receipt", tx_id.encode(), tx_kind.encode()))


class Sealer:
    """Encrypt and decrypt with one key; holds no other state."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("AES-256-GCM needs a 32-byte key")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
        """Return ``(nonce, ciphertext)`` for ``plaintext`` bound to ``aad``."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce, self._aead.encrypt(nonce, plaintext, aad)

    def open(self, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        """The plaintext, or ``Unsealable`` if anything was changed."""
        try:
            return self._aead.decrypt(nonce, ciphertext, aad)
        except (InvalidTag, ValueError):
            raise Unsealable from None


def load_key(path: Path, *, create: bool) -> bytes:
    """Read the key file, or create it (0600, fsynced) when ``create`` and it is absent.

    Refuses a file that group or others may read or write, or that is not 32 bytes:
    a key that leaked or was truncated must stop the agent, not be used.
    """
    try:
        return _read_key(path)
    except FileNotFoundError:
        if not create:
            raise KeyFileError(
                f"key file {path} is missing but the outbox holds entries sealed with it; "
                "restore the key file (a new key cannot read them)",
                path=str(path),
            ) from None
    return _create_key(path)


def _read_key(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        info = os.fstat(fd)
        if os.name == "posix" and stat.S_IMODE(info.st_mode) & 0o077:
            mode = oct(stat.S_IMODE(info.st_mode))
            raise KeyFileError(
                f"key file {path} has mode {mode}; it must be 0600 (chmod 600 {path})",
                path=str(path),
            )
        if info.st_size != KEY_BYTES:
            raise KeyFileError(
                f"key file {path} is {info.st_size} bytes; an outbox key is {KEY_BYTES} bytes",
                path=str(path),
            )
        data = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) != KEY_BYTES:
        raise KeyFileError(f"key file {path} could not be read whole", path=str(path))
    return data


def _create_key(path: Path) -> bytes:
    key = os.urandom(KEY_BYTES)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link() fails if another process created the key meanwhile: never overwrite a key.
        os.link(tmp, path)
    except FileExistsError:
        tmp.unlink()
        return _read_key(path)
    tmp.unlink()
    _fsync_dir(path.parent)
    return key


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
