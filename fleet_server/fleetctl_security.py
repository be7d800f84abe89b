"""fleetctl commands for security: ``audit`` (admin), ``whoami``, ``enroll-token``.

They use the ``_Api`` object fleetctl puts on the click context (``get``/``post``).
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table


def _compact(value: dict[str, Any] | None) -> str:
    return "-" if not value else json.dumps(value, ensure_ascii=False, sort_keys=True)[:80]


@click.command("audit")
@click.option("--actor", default=None)
@click.option("--action", default=None, help="Exact, or a prefix ending in .* (user.*).")
@click.option("--target", default=None)
@click.option("--since", default=None, help="ISO 8601 time.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def audit(
    api: Any,
    actor: str | None,
    action: str | None,
    target: str | None,
    since: str | None,
    limit: int,
    *,
    as_json: bool,
) -> None:
    """Show the audit log, newest first (needs the admin role)."""
    params = {"actor": actor, "action": action, "target": target, "since": since}
    query = "&".join(f"{k}={v}" for k, v in params.items() if v is not None)
    rows = api.get(f"/api/v1/audit?limit={limit}" + (f"&{query}" if query else ""))
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table(title=f"{len(rows)} audit entries")
    for column in ("when", "actor", "action", "target", "before", "after"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row["at"]).replace("T", " ").split(".")[0],
            row["actor"],
            row["action"],
            row["target"],
            _compact(row.get("before")),
            _compact(row.get("after")),
        )
    Console().print(table)


@click.command("whoami")
@click.pass_obj
def whoami(api: Any) -> None:
    """Print the user and role of the token in use."""
    me = api.get("/api/v1/me")
    click.echo(f"{me['name']} ({me['role']})")


def register(cli: click.Group) -> None:
    """Add these commands to fleetctl."""
    cli.add_command(audit)
    cli.add_command(whoami)
