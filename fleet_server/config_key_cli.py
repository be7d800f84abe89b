"""``fleet-server config-key``: make the config-signing key, show the key ids in force.

``generate PATH`` writes a new Ed25519 private key (mode 0600, never over a file) and
prints its key id and public key (PEM, for the extra public keys file during a
rotation); ``show`` prints the ids of the signing key and the extra public keys as the
settings name them (docs/config.md, "Keys and rotation").
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fleet_server.config.keys import (
    ConfigKeyError,
    generate_key_file,
    load_config_keys,
    public_pem,
    read_private_key,
)
from fleet_server.settings import Settings


@click.group("config-key")
def config_key() -> None:
    """The Ed25519 key that signs outlets' desired configs."""


@config_key.command("generate")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def generate(path: Path) -> None:
    """Write a new signing key to PATH (0600) and print its key id and public key."""
    try:
        key_id = generate_key_file(path)
        public = read_private_key(path).public_key()
    except ConfigKeyError as exc:
        click.echo(f"fleet-server: {exc}", err=True)
        sys.exit(1)
    click.echo(f"wrote {path}; key id {key_id}")
    click.echo("public key (for GOVEDGE_CONFIG_PUBLIC_KEYS_FILE during a rotation):")
    click.echo(public_pem(public), nl=False)


@config_key.command("show")
@click.option(
    "--key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Signing key file (GOVEDGE_CONFIG_SIGNING_KEY).",
)
@click.option(
    "--public-keys",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Extra public keys file (GOVEDGE_CONFIG_PUBLIC_KEYS_FILE).",
)
def show(key: Path | None, public_keys: Path | None) -> None:
    """Print the key ids agents receive; the signing one is marked."""
    overrides: dict[str, Path] = {}
    if key is not None:
        overrides["config_signing_key"] = key
    if public_keys is not None:
        overrides["config_public_keys_file"] = public_keys
    try:
        keys = load_config_keys(Settings(**overrides))  # type: ignore[arg-type]
    except ValueError as exc:  # pydantic's ValidationError included
        raise click.UsageError(f"bad settings: {exc}") from None
    except ConfigKeyError as exc:
        click.echo(f"fleet-server: {exc}", err=True)
        sys.exit(1)
    if not keys.public:
        click.echo("no config keys configured: the server publishes no configs")
        sys.exit(1)
    for key_id in keys.public:
        role = f"signing  ({keys.source})" if key_id == keys.key_id else "public only"
        click.echo(f"{key_id}  {role}")
