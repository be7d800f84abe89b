"""``fleet-server https-cert``: a certificate for serving the API over HTTPS.

Issued by the fleet CA, so agents that enrolled against it (and ``fleetctl --ca-file``)
trust the server without any other CA; a certificate from the organisation's own CA
works just as well with ``run --tls-cert/--tls-key``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fleet_server.pki import FleetCA, PkiError
from fleet_server.settings import Settings


@click.command("https-cert")
@click.option(
    "--hostname",
    "hostnames",
    multiple=True,
    required=True,
    help="Name or IP clients use for the server (repeat for several).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write https.crt and https.key (default: the CA directory).",
)
@click.option(
    "--pki-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Fleet CA directory (GOVEDGE_PKI_DIR).",
)
@click.option("--days", type=click.IntRange(1, 825), default=397, show_default=True)
def https_cert(
    hostnames: tuple[str, ...], out: Path | None, pki_dir: Path | None, days: int
) -> None:
    """Issue https.crt/https.key for `fleet-server run --tls-cert/--tls-key`."""
    try:
        settings = Settings(pki_dir=pki_dir) if pki_dir is not None else Settings()
    except ValueError as exc:
        raise click.UsageError(f"bad settings: {exc}") from None
    try:
        ca = FleetCA(settings.pki_dir)
        files = ca.issue_https_server(
            hostnames=hostnames, out_dir=out or settings.pki_dir, days=days
        )
    except (PkiError, OSError) as exc:
        click.echo(f"fleet-server: {exc}", err=True)
        sys.exit(1)
    click.echo(f"wrote {files.cert_file} and {files.key_file} (CA: {files.ca_file})")
    click.echo(
        f"serve with: fleet-server run --tls-cert {files.cert_file} --tls-key {files.key_file}"
    )
