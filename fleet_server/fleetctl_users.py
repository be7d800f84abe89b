"""``fleetctl users list`` and ``fleetctl users scope NAME --region …`` (admin): accounts
and their region scopes over ``/api/v1/users`` (docs/security.md, "Scoped operators")."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import click
from rich.console import Console
from rich.table import Table


def _where(regions: list[str]) -> str:
    return " ".join(regions) if regions else "whole fleet"


def register(cli: click.Group) -> None:
    """Add the ``users`` group to ``cli``."""

    @cli.group()
    def users() -> None:
        """Operator accounts (admin): list them, set their region scope."""

    @users.command("list")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.pass_obj
    def users_list(api: Any, *, as_json: bool) -> None:
        """Every account with its role and scope (never tokens or passwords)."""
        rows = api.get("/api/v1/users")
        if as_json:
            click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        table = Table(title=f"{len(rows)} users")
        for column in ("user", "role", "scope", "state"):
            table.add_column(column)
        for row in rows:
            state = "disabled" if row["disabled"] else "active"
            table.add_row(row["name"], row["role"], _where(row["regions"]), state)
        Console().print(table)

    @users.command("scope")
    @click.argument("name")
    @click.option("--region", "regions", multiple=True, metavar="PREFIX",
                  help="A region-code prefix the user is limited to (repeatable).")  # fmt: skip
    @click.option("--all", "whole", is_flag=True, help="The whole fleet (no limit).")
    @click.pass_obj
    def users_scope(api: Any, name: str, regions: tuple[str, ...], *, whole: bool) -> None:
        """Limit NAME to region-code prefixes (or --all); applies to their next request."""
        if whole == bool(regions):
            raise click.UsageError("give either --region PREFIX (one or more) or --all")
        response = api.send(
            "PUT", f"/api/v1/users/{quote(name, safe='')}/scope", body={"regions": list(regions)}
        )
        if response.is_error:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:200]
            raise click.ClickException(f"scope refused ({response.status_code}): {detail}")
        user = response.json()
        click.echo(f"user {user['name']}: {_where(user['regions'])}")
