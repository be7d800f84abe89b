"""The signed release manifest: it verifies as signed, and nothing else verifies.

A changed field, another key under the known key id, an unknown key, and a signature
made for a config with the same key (the context strings differ) are all refused.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from govedge_wire.config import (
    ConfigRefused,
    canonical_json,
    key_id_for,
    sign_config,
    verify_config,
)
from govedge_wire.config.signing import signed_payload
from govedge_wire.releases import (
    RELEASE_SIGNING_CONTEXT,
    ManifestRefused,
    SignedManifest,
    manifest_payload,
    sign_manifest,
    verify_manifest,
)

KEY = Ed25519PrivateKey.generate()
KEY_ID = key_id_for(KEY.public_key())
KEYS = {KEY_ID: KEY.public_key()}
SHA = "ab" * 32


def _signed(key: Ed25519PrivateKey = KEY, key_id: str = KEY_ID) -> SignedManifest:
    return sign_manifest(
        key,
        key_id=key_id,
        version="1.2.0",
        file_name="govedge-1.2.0-py3-none-any.whl",
        size=1234,
        sha256=SHA,
        kind="wheel",
        created_at=datetime(2026, 12, 4, 8, 0, tzinfo=UTC),
    )


def _refusal(data: bytes | dict[str, Any]) -> str:
    with pytest.raises(ManifestRefused) as caught:
        verify_manifest(data, KEYS)
    return caught.value.reason


def test_a_signed_manifest_verifies_from_its_bytes() -> None:
    signed = _signed()
    assert verify_manifest(signed.to_bytes(), KEYS) == signed
    assert verify_manifest(signed.model_dump(mode="json"), KEYS).sha256 == SHA


@pytest.mark.parametrize(
    ("field", "value"),
    [("version", "1.2.1"), ("size", 1235), ("sha256", "cd" * 32), ("kind", "bundle"),
     ("file_name", "govedge-1.2.1-py3-none-any.whl"), ("created_at", "2026-12-05T08:00:00Z")],
)  # fmt: skip
def test_a_changed_field_is_refused(field: str, value: object) -> None:
    fields = _signed().model_dump(mode="json")
    fields[field] = value
    assert _refusal(canonical_json(fields)) == "bad_signature"


def test_another_key_under_the_known_id_is_refused() -> None:
    thief = _signed(Ed25519PrivateKey.generate(), KEY_ID)
    assert _refusal(thief.to_bytes()) == "bad_signature"


def test_an_unknown_key_is_refused() -> None:
    other = Ed25519PrivateKey.generate()
    assert _refusal(_signed(other, key_id_for(other.public_key())).to_bytes()) == "unknown_key"


def test_a_config_signature_never_verifies_as_a_release_and_back() -> None:
    """Same key: the payloads differ by their context, so neither signature crosses over."""
    fields = _signed().model_dump(mode="json")
    without_context = manifest_payload(fields).removeprefix(RELEASE_SIGNING_CONTEXT)
    as_config = KEY.sign(b"govedge-config-v1\n" + without_context)
    fields["signature"] = base64.b64encode(as_config).decode()
    assert _refusal(fields) == "bad_signature"
    # And the other way: the release signature over a config envelope's signed fields.
    config = sign_config(KEY, key_id=KEY_ID, outlet_id="o-1", version=1, config={})
    envelope = config.model_dump(mode="json")
    config_fields = signed_payload(envelope).removeprefix(b"govedge-config-v1\n")
    forged = KEY.sign(RELEASE_SIGNING_CONTEXT + config_fields)
    envelope["signature"] = base64.b64encode(forged).decode()
    with pytest.raises(ConfigRefused) as caught:
        verify_config(json.dumps(envelope).encode(), KEYS, outlet_id="o-1", applied_version=None)
    assert caught.value.reason == "bad_signature"


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b'{"version": "1"}', b"x" * 5000])
def test_garbage_is_refused(data: bytes) -> None:
    assert _refusal(data) == "garbage"
