"""The fleet's config-signing public keys as they travel: ``{key_id: base64 raw
32-byte Ed25519 public key}`` (enrollment and renewal answers, ``config-keys.json``).

The agent trusts configs and releases signed by these keys; the fleet server's
environment checks a release with them before a playbook copies it (docs/config.md,
"Keys and rotation").
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from govedge_wire.config.signing import KEY_ID_PATTERN

_MAX_KEYS: Final = 16


class ConfigKeysError(ValueError):
    """A keys file or answer that cannot be used; names what is wrong, never the key."""


def parse_config_keys(raw: object) -> dict[str, Ed25519PublicKey]:
    """``{key_id: base64 raw key}`` as public keys; ``ConfigKeysError`` if malformed."""
    if not isinstance(raw, Mapping):
        raise ConfigKeysError("config_keys must be an object of key id -> base64 key")
    if len(raw) > _MAX_KEYS:
        raise ConfigKeysError(f"more than {_MAX_KEYS} config keys")
    keys: dict[str, Ed25519PublicKey] = {}
    for key_id, value in raw.items():
        if not isinstance(key_id, str) or not re.fullmatch(KEY_ID_PATTERN, key_id):
            raise ConfigKeysError(f"invalid config key id {str(key_id)[:64]!r}")
        try:
            data = base64.b64decode(str(value), validate=True)
            keys[key_id] = Ed25519PublicKey.from_public_bytes(data)
        except (binascii.Error, ValueError):
            raise ConfigKeysError(f"config key {key_id!r} is not a base64 32-byte key") from None
    return keys
