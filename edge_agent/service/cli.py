"""``edge-agent service unit|udev-rules``: print what a technician installs (stdout)."""

from __future__ import annotations

import sys
from pathlib import Path, PurePosixPath

import click

from edge_agent.profiles.loader import load_profiles
from edge_agent.service.udev import RulesError, render_rules
from edge_agent.service.unit import (
    DEFAULT_CONFIG,
    DEFAULT_DATA_DIR,
    DEFAULT_HOME,
    DEFAULT_KEYS_DIR,
    Layout,
    UnitError,
    render_unit,
)


@click.group(name="service")
def service() -> None:
    """The agent as a systemd service: the unit and the udev rules (docs/technicians.md)."""


@service.command("unit")
@click.option("--home", default=str(DEFAULT_HOME), show_default=True, help="Install home.")
@click.option("--config", default=str(DEFAULT_CONFIG), show_default=True, help="Settings.")
@click.option("--data-dir", default=str(DEFAULT_DATA_DIR), show_default=True,
              help="DATA_DIR (/var/lib/NAME: the unit's StateDirectory).")  # fmt: skip
@click.option("--keys-dir", default=str(DEFAULT_KEYS_DIR), show_default=True,
              help="The agent's keys_dir (/var/lib/NAME, a second StateDirectory).")  # fmt: skip
@click.option("--user", default="govedge", show_default=True, help="Service user.")
@click.option("--group", default="govedge", show_default=True, help="Service group.")
@click.option("--device-group", default="govedge-devices", show_default=True,
              help="Group the udev rules give the devices to.")  # fmt: skip
def unit(
    home: str, config: str, data_dir: str, keys_dir: str, user: str, group: str,
    device_group: str,
) -> None:  # fmt: skip
    """Print the systemd unit (install as /etc/systemd/system/govedge-agent.service)."""
    layout = Layout(
        home=PurePosixPath(home), config=PurePosixPath(config),
        data_dir=PurePosixPath(data_dir), keys_dir=PurePosixPath(keys_dir),
        user=user, group=group, device_group=device_group,
    )  # fmt: skip
    try:
        click.echo(render_unit(layout), nl=False)
    except UnitError as exc:
        click.echo(f"edge-agent service unit: error: {exc}", err=True)
        sys.exit(2)


@service.command("udev-rules")
@click.option("--group", default="govedge-devices", show_default=True, help="Device group.")
@click.option("--profiles-dir", type=click.Path(path_type=Path), default=None,
              help="Folder of device profiles (default: the shipped ones).")  # fmt: skip
def udev_rules(group: str, profiles_dir: Path | None) -> None:
    """Print udev rules for every USB device a profile names (70-govedge.rules)."""
    loaded = load_profiles(profiles_dir, log_problems=False)
    for problem in loaded.problems:
        click.echo(f"edge-agent service udev-rules: profile left out: {problem}", err=True)
    try:
        click.echo(render_rules(loaded.profiles, group=group), nl=False)
    except RulesError as exc:
        click.echo(f"edge-agent service udev-rules: error: {exc}", err=True)
        sys.exit(2)
