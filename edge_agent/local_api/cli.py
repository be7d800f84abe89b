"""``edge-agent apps add|list|remove``: register the clerk apps allowed to call the local API.

``add`` prints the new token once, on stdout, alone on its line (so a script can take
it with ``| tail -1``); only its salted hash is stored. The running agent notices the
change by itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edge_agent.local_api.apps import AppRegistry, AppRegistryError
from edge_agent.local_api.roles import DEFAULT_ROLE, ROLES

__all__ = ["apps"]

_DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="GOVEDGE_DATA_DIR",
    required=True,
    help="The agent's data directory (apps.json lives there); or GOVEDGE_DATA_DIR.",
)


def _registry(data_dir: Path) -> AppRegistry:
    try:
        return AppRegistry(data_dir)
    except AppRegistryError as exc:
        click.echo(f"edge-agent: error: {exc}", err=True)
        sys.exit(1)


@click.group(name="apps")
def apps() -> None:
    """Clerk apps allowed to use the local API (tokens and allowed origins)."""


@apps.command(name="add")
@click.argument("name")
@click.option(
    "--origin",
    "origins",
    multiple=True,
    help="An origin (https://host[:port]) whose pages may call the API; repeatable. "
    "Without one, only non-browser clients (no Origin header) can use the token.",
)
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default=DEFAULT_ROLE,
    show_default=True,
    help="clerk: every route; display: a hall display screen (read-only queue, "
    "announcements, queue events); kiosk: a display that may also issue tickets and "
    "check in appointments.",
)
@_DATA_DIR
def add(name: str, origins: tuple[str, ...], role: str, data_dir: Path) -> None:
    """Register NAME and print its token (shown this once only)."""
    registry = _registry(data_dir)
    try:
        app, token = registry.add(name, origins=origins, role=role)
    except AppRegistryError as exc:
        click.echo(f"edge-agent: error: {exc}", err=True)
        sys.exit(2)
    allowed = ", ".join(app.origins) or "(none: non-browser clients only)"
    click.echo(f"registered {app.role} app {app.name}; allowed origins: {allowed}", err=True)
    click.echo("its token follows; it is shown only now, store it in the app's config:", err=True)
    click.echo(token)


@apps.command(name="list")
@_DATA_DIR
def list_apps(data_dir: Path) -> None:
    """List registered apps and their origins (never tokens)."""
    for app in _registry(data_dir).apps():
        click.echo(f"{app.name}\t{app.created}\t{' '.join(app.origins) or '-'}\t{app.role}")


@apps.command(name="remove")
@click.argument("name")
@_DATA_DIR
def remove(name: str, data_dir: Path) -> None:
    """Remove NAME; its token stops working at once."""
    try:
        removed = _registry(data_dir).remove(name)
    except AppRegistryError as exc:
        click.echo(f"edge-agent: error: {exc}", err=True)
        sys.exit(1)
    if not removed:
        click.echo(f"edge-agent: error: no app {name!r}", err=True)
        sys.exit(1)
    click.echo(f"removed clerk app {name}", err=True)
