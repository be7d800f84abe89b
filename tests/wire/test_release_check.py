"""``python -m govedge_wire.release_check``: what the outlet playbooks run on the
controller before a release goes to a PC. It prints the version the agent's installer
will name the release's folder by (the PEP 440 normal form), and refuses a release whose
bytes, file name or signature do not match, with the reason and exit 1."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from govedge_wire.config import key_id_for
from govedge_wire.release_check import file_sha256
from govedge_wire.releases import sign_manifest

KEY = Ed25519PrivateKey.generate()


def _files(tmp_path: Path, *, version: str, key: Ed25519PrivateKey = KEY) -> list[str]:
    artifact = tmp_path / f"govedge-{version}-agent-bundle.tar.gz"
    artifact.write_bytes(b"not really a bundle, but bytes the manifest names")
    manifest = sign_manifest(
        key, key_id=key_id_for(key.public_key()), version=version, file_name=artifact.name,
        size=artifact.stat().st_size, sha256=file_sha256(artifact), kind="bundle",
    )  # fmt: skip
    (tmp_path / "manifest.json").write_text(manifest.model_dump_json(), encoding="utf-8")
    public = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    keys = {key_id_for(KEY.public_key()): base64.b64encode(public).decode()}
    (tmp_path / "keys.json").write_text(json.dumps(keys), encoding="utf-8")
    return ["--artifact", str(artifact), "--manifest", str(tmp_path / "manifest.json"),
            "--keys", str(tmp_path / "keys.json")]  # fmt: skip


def _check(args: list[str]) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "govedge_wire.release_check", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_the_version_printed_is_the_installers_folder_name(tmp_path: Path) -> None:
    done = _check(_files(tmp_path, version="1.04"))
    assert (done.returncode, done.stdout.strip()) == (0, "1.4"), done.stderr


def test_changed_bytes_and_a_foreign_key_are_refused_with_the_reason(tmp_path: Path) -> None:
    args = _files(tmp_path, version="1.4.0")
    Path(args[1]).write_bytes(b"tampered")
    done = _check(args)
    assert done.returncode == 1
    assert "hash_mismatch" in done.stderr
    assert done.stdout == ""
    other = tmp_path / "other"
    other.mkdir()
    done = _check(_files(other, version="1.4.0", key=Ed25519PrivateKey.generate()))
    assert done.returncode == 1
    assert "bad_manifest" in done.stderr
    assert done.stdout == ""
