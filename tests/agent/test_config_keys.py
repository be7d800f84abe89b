"""The config-signing public keys the agent holds: stored atomically, read back, checked."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge_agent.fleet_config import ConfigKeysError, load_config_keys, store_config_keys
from edge_agent.fleet_config.keys import keys_path
from govedge_wire.config import key_id_for


def _key() -> tuple[str, str]:
    public = Ed25519PrivateKey.generate().public_key()
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return key_id_for(public), base64.b64encode(raw).decode()


def test_keys_from_an_answer_are_stored_beside_the_certificate(tmp_path: Path) -> None:
    first, second = _key(), _key()
    keys_dir = tmp_path / "keys"
    assert store_config_keys(keys_dir, dict([first, second])) == 2
    assert keys_path(keys_dir) == keys_dir / "config-keys.json"
    assert keys_path(keys_dir).stat().st_mode & 0o777 == 0o600
    assert keys_dir.stat().st_mode & 0o777 == 0o700
    assert sorted(load_config_keys(keys_dir, None)) == sorted([first[0], second[0]])
    assert not list(keys_dir.glob(".*.new"))  # no temp file left behind


def test_no_keys_means_no_trust_and_a_keys_file_adds_some(tmp_path: Path) -> None:
    assert load_config_keys(tmp_path, None) == {}
    key_id, raw = _key()
    extra = tmp_path / "keys.json"
    extra.write_text(json.dumps({key_id: raw}))
    assert list(load_config_keys(tmp_path, extra)) == [key_id]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[]", "must be an object"),
        ('{"bad id!": "AAAA"}', "invalid config key id"),
        ('{"k1": "not base64"}', "not a base64 32-byte key"),
        ('{"k1": "AAAA"}', "not a base64 32-byte key"),
        ("{", "is not JSON"),
    ],
)
def test_malformed_keys_are_refused_naming_the_problem(
    tmp_path: Path, content: str, message: str
) -> None:
    extra = tmp_path / "keys.json"
    extra.write_text(content)
    with pytest.raises(ConfigKeysError, match=message):
        load_config_keys(tmp_path, extra)
    with pytest.raises(ConfigKeysError):
        store_config_keys(tmp_path, json.loads(content) if content != "{" else None)
    assert not keys_path(tmp_path).exists()  # nothing stored
