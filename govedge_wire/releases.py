"""The signed manifest of an agent release: what the server stored and the agent checks.

The fleet server signs each release's manifest with its config-signing key (Ed25519),
under its own context string, so a config signature never verifies as a release and a
release signature never as a config (docs/updates.md). The agent downloads the artifact,
checks its size and SHA-256 against a manifest that ``verify_manifest`` accepted, and
only then installs it. It proves who it is for the download with its client
certificate (``download_proof_payload`` and the headers).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, get_args

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from govedge_wire.config.signing import KEY_ID_PATTERN, canonical_json

__all__ = [
    "CERTIFICATE_HEADER",
    "DOWNLOAD_PROOF_CONTEXT",
    "MANIFEST_REFUSALS",
    "MAX_PROOF_SKEW_S",
    "RELEASE_SIGNING_CONTEXT",
    "SIGNATURE_HEADER",
    "TIME_HEADER",
    "ManifestRefusal",
    "ManifestRefused",
    "ReleaseKind",
    "SignedManifest",
    "download_proof_payload",
    "manifest_payload",
    "sign_manifest",
    "verify_manifest",
]

# Domain separation from the config envelope's b"govedge-config-v1\n" (same key).
RELEASE_SIGNING_CONTEXT: Final = b"govedge-release-v1\n"
SIGNED_FIELDS: Final = ("version", "file_name", "size", "sha256", "created_at", "kind", "key_id")
MAX_MANIFEST_BYTES: Final = 4096
# A file name safe in a path and a URL: no separators, no leading dot.
FILE_NAME_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}"

# An agent downloads with its client certificate: these headers carry the certificate
# (base64 of its PEM), the time (Unix seconds) and its key's signature over
# ``download_proof_payload`` (docs/updates.md, "Downloads by agents").
CERTIFICATE_HEADER: Final = "X-Govedge-Outlet-Certificate"
TIME_HEADER: Final = "X-Govedge-Outlet-Time"
SIGNATURE_HEADER: Final = "X-Govedge-Outlet-Signature"
DOWNLOAD_PROOF_CONTEXT: Final = b"govedge-outlet-request-v1\n"
# The server refuses a proof whose time is further than this from its clock.
MAX_PROOF_SKEW_S: Final = 300

ReleaseKind = Literal["wheel", "bundle"]
ManifestRefusal = Literal["garbage", "unknown_key", "bad_signature"]
MANIFEST_REFUSALS: Final[tuple[ManifestRefusal, ...]] = get_args(ManifestRefusal)


class ManifestRefused(Exception):
    """A manifest that must not be trusted; ``reason`` is its counter key."""

    def __init__(self, message: str, *, reason: ManifestRefusal) -> None:
        super().__init__(message)
        self.reason: ManifestRefusal = reason


class SignedManifest(BaseModel):
    """One release as signed: every field but ``signature`` is covered by it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Annotated[str, Field(min_length=1, max_length=64)]
    file_name: Annotated[str, Field(pattern=rf"^{FILE_NAME_PATTERN}$")]
    size: Annotated[int, Field(ge=1, le=2**63 - 1)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    created_at: AwareDatetime
    kind: ReleaseKind
    key_id: Annotated[str, Field(pattern=rf"^{KEY_ID_PATTERN}$")]
    # An Ed25519 signature is 64 bytes: 88 characters of standard base64.
    signature: Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]{86}==$")]

    def to_bytes(self) -> bytes:
        """The manifest as served: canonical JSON."""
        return canonical_json(self.model_dump(mode="json"))


def manifest_payload(fields: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: the context, then the signed fields' canonical JSON."""
    return RELEASE_SIGNING_CONTEXT + canonical_json({name: fields[name] for name in SIGNED_FIELDS})


def download_proof_payload(method: str, path: str, at: int) -> bytes:
    """The bytes an outlet signs to make one request with its certificate."""
    return DOWNLOAD_PROOF_CONTEXT + f"{method.upper()}\n{path}\n{at}".encode()


def sign_manifest(
    private_key: Ed25519PrivateKey,
    *,
    key_id: str,
    version: str,
    file_name: str,
    size: int,
    sha256: str,
    kind: ReleaseKind,
    created_at: datetime | None = None,
) -> SignedManifest:
    """Sign one release's manifest; ``pydantic.ValidationError`` for a bad field."""
    when = (created_at or datetime.now(UTC)).astimezone(UTC)
    unsigned = SignedManifest.model_construct(
        version=version,
        file_name=file_name,
        size=size,
        sha256=sha256,
        created_at=when,
        kind=kind,
        key_id=key_id,
        signature="",
    )
    # Sign the JSON forms, exactly as the agent reads them back.
    fields = unsigned.model_dump(mode="json")
    fields["signature"] = base64.b64encode(private_key.sign(manifest_payload(fields))).decode()
    return SignedManifest.model_validate(fields)


def verify_manifest(
    manifest: bytes | Mapping[str, Any], public_keys: Mapping[str, Ed25519PublicKey]
) -> SignedManifest:
    """The manifest if its signature verifies with one of ``public_keys``; else
    ``ManifestRefused`` (``garbage``, ``unknown_key`` or ``bad_signature``)."""
    if isinstance(manifest, bytes) and len(manifest) > MAX_MANIFEST_BYTES:
        raise ManifestRefused("manifest is too large", reason="garbage")
    try:
        raw = json.loads(manifest) if isinstance(manifest, bytes) else dict(manifest)
        signed = SignedManifest.model_validate(raw)
    except (UnicodeDecodeError, ValueError, TypeError, RecursionError):  # ValidationError too
        raise ManifestRefused("not a release manifest", reason="garbage") from None
    key = public_keys.get(signed.key_id)
    if key is None:
        raise ManifestRefused(f"signed with unknown key {signed.key_id!r}", reason="unknown_key")
    try:
        # The JSON forms as received: a re-serialised datetime could differ from the signed text.
        key.verify(base64.b64decode(signed.signature, validate=True), manifest_payload(raw))
    except (InvalidSignature, binascii.Error, ValueError, TypeError, KeyError):
        raise ManifestRefused("signature does not verify", reason="bad_signature") from None
    return signed
