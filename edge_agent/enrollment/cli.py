"""``edge-agent enroll``: get this outlet's certificate with a one-time token."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edge_agent.enrollment.client import enroll
from edge_agent.enrollment.errors import EnrollmentError
from edge_agent.enrollment.keys_option import keys_dir_of, keys_dir_option
from edge_agent.enrollment.store import TlsStore
from edge_agent.enrollment.trust import fingerprint


def ca_fingerprint_of(keys_dir: Path) -> str:
    """The SHA-256 fingerprint of the fleet CA pinned in ``keys_dir``."""
    return fingerprint(TlsStore(keys_dir).pinned_ca())


@click.command(name="enroll")
@click.option(
    "--server",
    "server_url",
    required=True,
    envvar="GOVEDGE_SERVER",
    help="Fleet server base URL, e.g. https://fleet.example:8080.",
)
@click.option(
    "--token",
    required=True,
    envvar="GOVEDGE_ENROLL_TOKEN",
    help="One-time enrollment token from `fleet-server enroll-token`.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    envvar="GOVEDGE_DATA_DIR",
    help="The agent's data directory.",
)
@keys_dir_option
@click.option("--timeout", type=float, default=30.0, show_default=True, help="HTTP timeout, s.")
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="GOVEDGE_CA_FILE",
    help="The fleet CA (PEM) this outlet must trust: the answer's CA must be this one, "
    "and it is also trusted for the https:// server. Default: pin the CA of the answer.",
)
@click.option(
    "--ca-fingerprint",
    envvar="GOVEDGE_CA_FINGERPRINT",
    help="SHA-256 fingerprint (hex, colons allowed) the fleet CA in the answer must have.",
)
@click.option(
    "--allow-insecure-http",
    is_flag=True,
    help="Allow a plain http:// server that is not on this PC (test networks only).",
)
def enroll_command(
    server_url: str,
    token: str,
    data_dir: Path,
    keys_dir: Path | None,
    timeout: float,
    ca_file: Path | None,
    ca_fingerprint: str | None,
    *,
    allow_insecure_http: bool,
) -> None:
    """Make this PC's key, send a CSR, store the certificate and pin the fleet CA.

    The server URL must be https://, or http:// to this PC (127.0.0.1, ::1, localhost);
    any other http:// needs --allow-insecure-http.
    """
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        keys = keys_dir_of(data_dir, keys_dir, move=True)
        identity = enroll(
            server_url=server_url,
            token=token,
            keys_dir=keys,
            timeout=timeout,
            ca_file=ca_file,
            ca_fingerprint=ca_fingerprint,
            allow_insecure_http=allow_insecure_http,
        )
    except (EnrollmentError, OSError) as exc:
        click.echo(f"edge-agent: enrollment failed: {exc}", err=True)
        sys.exit(1)
    click.echo(
        f"enrolled as outlet {identity.outlet_id}; certificate valid until "
        f"{identity.not_after.isoformat()}; fleet CA pinned: sha256 {ca_fingerprint_of(keys)}"
    )
