"""``fleet-server releases add FILE --version V``: store an agent build from the server host.

The same checks, signature, file placement and audit entry (actor ``cli``) as
``POST /api/v1/releases``, without the HTTP hop (docs/updates.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

import click

from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.migrate import upgrade
from fleet_server.releases.artifacts import ArtifactRefused
from fleet_server.releases.store import ReleaseError, Upload, add_release
from fleet_server.settings import Settings

_CHUNK: Final = 1024 * 1024


@click.group()
def releases() -> None:
    """Agent releases (wheels and bundles) outlets install."""


@releases.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--version", "version", required=True, help="PEP 440 version of the build.")
@click.option("--notes", default=None, help="Release notes (shown to operators).")
@click.option("--database-url", default=None, help="GOVEDGE_DATABASE_URL.")
@click.option("--releases-dir", type=click.Path(path_type=Path), default=None,
              help="GOVEDGE_RELEASES_DIR.")  # fmt: skip
@click.option("--signing-key", type=click.Path(path_type=Path), default=None,
              help="GOVEDGE_CONFIG_SIGNING_KEY.")  # fmt: skip
def add(
    file: Path,
    version: str,
    notes: str | None,
    database_url: str | None,
    releases_dir: Path | None,
    signing_key: Path | None,
) -> None:
    """Check FILE, sign its manifest and store it as release VERSION."""
    overrides = {
        "database_url": database_url,
        "releases_dir": releases_dir,
        "config_signing_key": signing_key,
    }
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValueError as exc:
        raise click.UsageError(f"bad settings: {exc}") from None
    try:
        upload = Upload(settings)
    except OSError as exc:
        click.echo(
            f"fleet-server: cannot write to {settings.releases_dir}: {exc.strerror}", err=True
        )
        sys.exit(1)
    engine = make_engine(settings.database_url)
    try:
        upgrade(engine, key_dir=settings.pii_key_dir)
        with file.open("rb") as stream:
            while chunk := stream.read(_CHUNK):
                upload.write(chunk)
        upload.finish()
        added = add_release(
            make_sessionmaker(engine), settings, upload,
            version=version, file_name=file.name, notes=notes, actor="cli",
        )  # fmt: skip
    except (ArtifactRefused, ReleaseError) as exc:
        click.echo(f"fleet-server: {exc}; nothing stored", err=True)
        sys.exit(1)
    finally:
        upload.discard()
        engine.dispose()
    row = added.release
    verb = "stored" if added.created else "already stored (same file)"
    click.echo(
        f"release {row.version} {verb}: {row.file_name} {row.size} bytes sha256 {row.sha256}"
    )
