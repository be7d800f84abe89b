"""Canonical form, hash and the Ed25519-signed envelope of an effective config.

The server signs, the agent verifies (docs/config.md, "The envelope"). The signature
covers the envelope's fields except ``config`` and ``signature``, prefixed by a context
string; ``config`` is bound to it through ``hash``. ``verify_config`` returns a config
only when every check passed, and raises ``ConfigRefused`` with one stable reason
otherwise, so the agent can count and report refusals and keep its last good config.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, NoReturn, get_args

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, ValidationError

from govedge_wire.config.models import DesiredConfig
from govedge_wire.messages import MAX_PAYLOAD_BYTES
from govedge_wire.topics import OUTLET_ID_PATTERN

# The envelope travels as one retained MQTT payload, so it has the payload limit.
MAX_CONFIG_BYTES: Final = MAX_PAYLOAD_BYTES
# Domain separation: a signature made for anything else with the same key never verifies.
SIGNING_CONTEXT: Final = b"govedge-config-v1\n"
SIGNED_FIELDS: Final = ("outlet_id", "version", "hash", "issued_at", "key_id")
KEY_ID_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"

RefusalReason = Literal[
    "oversize",
    "garbage",
    "unknown_key",
    "bad_signature",
    "hash_mismatch",
    "other_outlet",
    "replayed",
    "schema",
]
REFUSAL_REASONS: Final[tuple[RefusalReason, ...]] = get_args(RefusalReason)


class ConfigRefused(Exception):
    """A config envelope the agent must not apply; ``reason`` is its counter key.

    For ``replayed``, ``version`` and ``hash`` are the envelope's (signature checked):
    the retained config comes again on every reconnect, and the same version with the
    applied hash is "already applied", not an attack.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: RefusalReason,
        version: int | None = None,
        hash: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason: RefusalReason = reason
        self.version = version
        self.hash = hash


def canonical_json(obj: Any) -> bytes:
    """``obj`` as compact UTF-8 JSON with sorted keys: the bytes that are hashed.

    Refuses NaN and infinities (``ValueError``) and non-string keys (``TypeError``),
    which JSON cannot carry faithfully.
    """
    _check_keys(obj)
    text = json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def _check_keys(obj: Any) -> None:
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"object keys must be strings, got {key!r}")
            _check_keys(value)
    elif isinstance(obj, list | tuple):
        for value in obj:
            _check_keys(value)
    elif isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError("NaN and infinities have no JSON form")


def config_hash(config: Any) -> str:
    """SHA-256 (hex) of ``config``'s canonical JSON."""
    return hashlib.sha256(canonical_json(config)).hexdigest()


def key_id_for(public_key: Ed25519PublicKey) -> str:
    """A stable id for a public key: ``ed25519-`` and 16 hex digits of its SHA-256."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "ed25519-" + hashlib.sha256(raw).hexdigest()[:16]


class SignedConfig(BaseModel):
    """The envelope published on an outlet's ``down/config`` (retained)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    outlet_id: Annotated[str, Field(pattern=rf"^{OUTLET_ID_PATTERN}$")]
    version: Annotated[int, Field(ge=1, le=2**63 - 1)]
    hash: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    issued_at: AwareDatetime
    config: dict[str, JsonValue]
    key_id: Annotated[str, Field(pattern=rf"^{KEY_ID_PATTERN}$")]
    # An Ed25519 signature is 64 bytes: 88 characters of standard base64.
    signature: Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]{86}==$")]

    def to_bytes(self) -> bytes:
        """The envelope as published: canonical JSON."""
        return canonical_json(self.model_dump(mode="json"))


def signed_payload(fields: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: the context, then the signed fields as canonical JSON.

    ``fields`` are the envelope's fields in their JSON form (as read from the payload).
    """
    return SIGNING_CONTEXT + canonical_json({name: fields[name] for name in SIGNED_FIELDS})


def sign_config(
    private_key: Ed25519PrivateKey,
    *,
    key_id: str,
    outlet_id: str,
    version: int,
    config: Mapping[str, Any] | DesiredConfig,
    issued_at: datetime | None = None,
) -> SignedConfig:
    """Validate ``config`` and sign it for one outlet at ``version``.

    Raises ``pydantic.ValidationError`` for an invalid config or envelope field, and
    ``ValueError`` when the envelope would exceed ``MAX_CONFIG_BYTES``. Only keys that
    were set are sent (``None`` means absent), normalised by the model (tuples as lists,
    floats as floats), so the agent hashes exactly what was signed.
    """
    model = config if isinstance(config, DesiredConfig) else DesiredConfig.model_validate(config)
    body = model.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    when = (issued_at or datetime.now(UTC)).astimezone(UTC)
    unsigned = SignedConfig.model_construct(
        outlet_id=outlet_id,
        version=version,
        hash=config_hash(body),
        issued_at=when,
        config=body,
        key_id=key_id,
        signature="",
    )
    # Sign the JSON forms, exactly as the agent will read them from the payload.
    fields = unsigned.model_dump(mode="json")
    fields["signature"] = base64.b64encode(private_key.sign(signed_payload(fields))).decode()
    signed = SignedConfig.model_validate(fields)
    size = len(signed.to_bytes())
    if size > MAX_CONFIG_BYTES:
        raise ValueError(f"signed config of {size} bytes exceeds {MAX_CONFIG_BYTES}")
    return signed


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as infinity, which has no canonical form
        raise ValueError(f"{text} is out of range")
    return value


def verify_config(
    envelope: bytes,
    public_keys: Mapping[str, Ed25519PublicKey],
    *,
    outlet_id: str,
    applied_version: int | None,
) -> DesiredConfig:
    """The config in ``envelope`` if it may be applied here; ``ConfigRefused`` if not.

    Checks run cheapest first, and nothing the sender claims (outlet, version) is
    believed before the signature and the hash are checked: size, JSON and envelope
    shape, key id, signature, hash, outlet, version above ``applied_version`` (None:
    nothing applied yet), then the config against the schema.
    """
    if len(envelope) > MAX_CONFIG_BYTES:
        raise ConfigRefused(
            f"envelope of {len(envelope)} bytes exceeds {MAX_CONFIG_BYTES}", reason="oversize"
        )
    try:
        raw = json.loads(envelope, parse_constant=_reject_constant, parse_float=_finite_float)
        signed = SignedConfig.model_validate(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):  # JSONDecodeError, ValidationError
        raise ConfigRefused("not a signed config envelope", reason="garbage") from None
    key = public_keys.get(signed.key_id)
    if key is None:
        raise ConfigRefused(f"signed with unknown key {signed.key_id!r}", reason="unknown_key")
    try:
        key.verify(base64.b64decode(signed.signature, validate=True), signed_payload(raw))
    except (InvalidSignature, binascii.Error, ValueError, TypeError):
        raise ConfigRefused("signature does not verify", reason="bad_signature") from None
    if config_hash(raw["config"]) != signed.hash:
        raise ConfigRefused("config does not match its signed hash", reason="hash_mismatch")
    if signed.outlet_id != outlet_id:
        raise ConfigRefused(f"config is for outlet {signed.outlet_id!r}", reason="other_outlet")
    if applied_version is not None and signed.version <= applied_version:
        raise ConfigRefused(
            f"version {signed.version} is not above the applied {applied_version}",
            reason="replayed",
            version=signed.version,
            hash=signed.hash,
        )
    try:
        return DesiredConfig.model_validate(raw["config"])
    except ValidationError as exc:
        where = ",".join(sorted({".".join(map(str, e["loc"])) for e in exc.errors()})[:5])
        raise ConfigRefused(f"config invalid at: {where}", reason="schema") from None
