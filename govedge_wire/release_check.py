"""``python -m govedge_wire.release_check``: verify a release before it is copied
to an outlet (the provision_outlet playbook runs it on the controller).

The same checks as an agent's download (docs/updates.md): the manifest's Ed25519
signature by one of the fleet's config-signing keys, then the artifact's size, SHA-256
and file name against it. Only the wire package and cryptography are imported, so the
fleet server's environment (which has no agent extra) can run it. Exit 0 and the
version on stdout; exit 1 and the refusal's reason on stderr.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from packaging.version import InvalidVersion, Version

from govedge_wire.config.public_keys import ConfigKeysError, parse_config_keys
from govedge_wire.releases import ManifestRefused, verify_manifest


def file_sha256(path: Path) -> str:
    """A file's SHA-256 (hex), read in 1 MiB blocks: the agent's download, this check and
    the fleet server's archives all hash files this way."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def check(artifact: Path, manifest_file: Path, keys_file: Path) -> str:
    """The release's version if ``artifact`` is what the signed manifest says; else
    ``ValueError`` naming the reason (``bad_manifest``, ``hash_mismatch``, ...)."""
    try:
        keys = parse_config_keys(json.loads(keys_file.read_text(encoding="utf-8")))
        manifest = verify_manifest(manifest_file.read_bytes(), keys)
    except ManifestRefused as exc:
        raise ValueError(f"bad_manifest: {exc}") from None
    except (ConfigKeysError, ValueError) as exc:
        raise ValueError(f"bad_keys: {exc}") from None
    if artifact.name != manifest.file_name:
        raise ValueError(f"wrong_file: the manifest is for {manifest.file_name!r}")
    size = artifact.stat().st_size
    if size != manifest.size or file_sha256(artifact) != manifest.sha256:
        raise ValueError(f"hash_mismatch: {size} bytes do not match the signed manifest")
    try:
        # the installer names version folders by the normal form ("1.04" -> "1.4")
        return str(Version(manifest.version))
    except InvalidVersion:
        raise ValueError(
            f"bad_manifest: {manifest.version[:64]!r} is not a PEP 440 version"
        ) from None


def main(argv: list[str] | None = None) -> int:
    # Here, not at the top: the agent imports ``file_sha256`` from this module and has
    # no use for argparse (~0.3 MiB).
    import argparse

    parser = argparse.ArgumentParser(
        prog="check_release", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--keys", type=Path, required=True, help="config-keys JSON")
    args = parser.parse_args(argv)
    try:
        print(check(args.artifact, args.manifest, args.keys))
    except (OSError, ValueError) as exc:
        print(f"release refused: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
