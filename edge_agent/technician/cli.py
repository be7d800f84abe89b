"""``edge-agent outbox status``, ``edge-agent certificate renew``, ``edge-agent diagnose``:
the technician's commands, and what the outlet playbooks run (docs/technicians.md)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from edge_agent.enrollment.keys_option import keys_dir_of, keys_dir_option
from edge_agent.technician.outbox_state import (
    OutboxUnreadable,
    read_current_outbox_state,
    read_outbox_state,
)
from edge_agent.updates.layout import DEFAULT_HOME

DATA_DIR_OPTION = click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="GOVEDGE_DATA_DIR",
    default=Path("/var/lib/govedge"),
    show_default=True,
    help="the agent's DATA_DIR",
)


@click.group(name="outbox")
def outbox_command() -> None:
    """What the outbox still holds."""


@outbox_command.command(name="status")
@DATA_DIR_OPTION
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--require-empty",
    is_flag=True,
    help="exit 3 while anything waits to be sent (a decommission must wait)",
)
def outbox_status(data_dir: Path, as_json: bool, require_empty: bool) -> None:
    """Entries waiting for the fleet, dead letters, the oldest entry's age."""
    try:
        if require_empty:
            state = read_current_outbox_state(data_dir)
        else:
            state = read_outbox_state(data_dir, now_ms=int(time.time() * 1000))
    except OutboxUnreadable as exc:
        click.echo(f"edge-agent: {exc}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(state.as_dict()))
    else:
        age = "-" if state.oldest_age_s is None else f"{state.oldest_age_s:.0f} s"
        click.echo(f"waiting {state.waiting}  dead letters {state.dead_letters}  oldest {age}")
    if require_empty and not state.empty:
        click.echo(
            f"edge-agent: the outbox still holds {state.waiting} entries not yet at the fleet",
            err=True,
        )
        sys.exit(3)


@click.group(name="certificate")
def certificate_command() -> None:
    """The outlet's certificate."""


@certificate_command.command(name="renew")
@DATA_DIR_OPTION
@keys_dir_option
@click.option("--timeout", type=float, default=30.0, show_default=True, help="HTTP timeout, s.")
@click.option(
    "--within-days",
    type=click.IntRange(0, 3650),
    default=None,
    help="renew only if the certificate expires within this many days (default: renew now)",
)
@click.option("--check", "dry_run", is_flag=True, help="only say whether it would renew")
def certificate_renew(
    data_dir: Path, keys_dir: Path | None, timeout: float, within_days: int | None, dry_run: bool
) -> None:
    """Renew the certificate with a new key (the running agent uses it at its next
    connect; restart the service to use it at once). Prints ``renewed outlet ...``,
    ``would renew ...`` (``--check``) or ``not renewed ...`` (not due)."""
    from datetime import UTC, datetime, timedelta

    from edge_agent.enrollment.client import renew
    from edge_agent.enrollment.errors import EnrollmentError
    from edge_agent.enrollment.store import TlsStore

    keys = keys_dir_of(data_dir, keys_dir, move=not dry_run)
    if dry_run and not (keys / "cert.pem").exists():  # a dry run moves nothing
        keys = data_dir / "tls"
    try:
        not_after = TlsStore(keys).identity().not_after
    except (EnrollmentError, OSError, ValueError) as exc:
        click.echo(f"edge-agent: no certificate to renew: {exc}", err=True)
        sys.exit(1)
    left = not_after - datetime.now(UTC)
    if within_days is not None and left > timedelta(days=within_days):
        click.echo(
            f"not renewed: valid until {not_after.isoformat()} "
            f"({left.days} days left, more than {within_days})"
        )
        return
    if dry_run:
        click.echo(f"would renew: valid until {not_after.isoformat()} ({left.days} days left)")
        return
    try:
        identity = renew(keys_dir=keys, timeout=timeout)
    except (EnrollmentError, OSError) as exc:
        click.echo(f"edge-agent: renewal failed: {exc}", err=True)
        sys.exit(1)
    click.echo(f"renewed outlet {identity.outlet_id}; valid until {identity.not_after.isoformat()}")


@click.command(name="diagnose")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False))
@DATA_DIR_OPTION
@keys_dir_option
@click.option(
    "--home",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="GOVEDGE_INSTALL_HOME",
    default=DEFAULT_HOME,
    show_default=True,
)
@click.option("--journal-lines", type=click.IntRange(0, 100_000), default=2000, show_default=True)
@click.option(
    "--log-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="read the agent's log from this file instead of the journal",
)
def diagnose_command(
    out: Path,
    config_file: Path | None,
    data_dir: Path,
    keys_dir: Path | None,
    home: Path,
    journal_lines: int,
    log_file: Path | None,
) -> None:
    """Write a diagnosis archive (state, devices, disk, clock, network, masked log)."""
    from edge_agent.errors import SettingsError
    from edge_agent.settings import load_settings
    from edge_agent.technician.diagnose import collect, write_archive

    settings = None
    if config_file is not None:
        try:
            settings = load_settings(config_file=config_file, data_dir=data_dir, keys_dir=keys_dir)
        except SettingsError as exc:
            click.echo(f"edge-agent: the settings are invalid, left out: {exc}", err=True)
    files = collect(
        settings=settings, data_dir=data_dir, home=home, journal_lines=journal_lines,
        log_file=log_file, keys_dir=keys_dir_of(data_dir, keys_dir, move=False),
    )  # fmt: skip
    write_archive(out, files)
    click.echo(str(out))
