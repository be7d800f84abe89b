"""``edge-agent enroll``: get this outlet's certificate with a one-time token."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edge_agent.enrollment.client import enroll
from edge_agent.enrollment.errors import EnrollmentError


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
@click.option("--timeout", type=float, default=30.0, show_default=True, help="HTTP timeout, s.")
def enroll_command(server_url: str, token: str, data_dir: Path, timeout: float) -> None:
    """Make this PC's key, send a CSR, store the certificate and the fleet CA."""
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        identity = enroll(server_url=server_url, token=token, data_dir=data_dir, timeout=timeout)
    except (EnrollmentError, OSError) as exc:
        click.echo(f"edge-agent: enrollment failed: {exc}", err=True)
        sys.exit(1)
    click.echo(
        f"enrolled as outlet {identity.outlet_id}; certificate valid until "
        f"{identity.not_after.isoformat()}"
    )
