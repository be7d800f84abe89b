"""Random bearer secrets and how they are stored.

A token is 32 random bytes (256 bits) in URL-safe base64 behind a short prefix that says
what it is for (``gvt_`` API, ``gve_`` enrollment). Only its SHA-256 is stored. A slow,
salted KDF (scrypt, argon2) protects *guessable* secrets such as passwords; a 256-bit
random value cannot be guessed, so a plain hash is as safe and lets the server find the
row by its hash in one index lookup.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Final

API_PREFIX: Final = "gvt_"
ENROLLMENT_PREFIX: Final = "gve_"
_BYTES: Final = 32
MAX_TOKEN_LENGTH: Final = 128


def new_token(prefix: str) -> str:
    """A fresh random token with ``prefix``."""
    return prefix + secrets.token_urlsafe(_BYTES)


def token_hash(token: str) -> str:
    """The stored form of ``token``: lowercase hex SHA-256."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
