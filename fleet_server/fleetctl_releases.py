"""``fleetctl releases add|list|show|bad``: agent releases (docs/updates.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import httpx
from rich.console import Console
from rich.table import Table

from fleet_server.fleetctl_format import when


def _size(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MiB" if size >= 1024 * 1024 else f"{size} B"


def upload(api: Any, file: Path, *, version: str, notes: str | None) -> dict[str, Any]:
    """Stream ``file`` to ``POST /api/v1/releases``; exits like the other commands."""
    params = {"version": version, "file_name": file.name}
    if notes:
        params["notes"] = notes
    headers = {**api.headers, "Content-Type": "application/octet-stream"}
    try:
        with file.open("rb") as stream:
            response = httpx.post(
                f"{api.server}/api/v1/releases",
                params=params,
                content=stream,
                headers=headers,
                verify=api.verify,
                # A large bundle over a slow link: the timeout is per read/write, not total.
                timeout=httpx.Timeout(api.timeout, write=max(api.timeout, 60.0)),
            )
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach fleet server at {api.server}: {exc}") from None
    if response.status_code in (401, 403):
        raise click.ClickException(f"not allowed ({response.status_code}): {_detail(response)}")
    if response.is_error:
        raise click.ClickException(f"release refused ({response.status_code}): {_detail(response)}")
    result: dict[str, Any] = response.json()
    result["_status"] = response.status_code
    return result


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail"))
    except (ValueError, AttributeError):
        return response.text[:200]


def register(cli: click.Group) -> None:
    """Add the ``releases`` group to ``cli``."""

    @cli.group()
    def releases() -> None:
        """Agent releases: upload, list, show, mark bad."""

    @releases.command("add")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--version", "version", required=True, help="PEP 440 version of the build.")
    @click.option("--notes", default=None, help="Release notes (shown to operators).")
    @click.pass_obj
    def releases_add(api: Any, file: Path, version: str, notes: str | None) -> None:
        """Upload FILE (a govedge wheel or bundle) as release VERSION."""
        row = upload(api, file, version=version, notes=notes)
        verb = "stored" if row["_status"] == 201 else "already stored (same file)"
        click.echo(f"release {row['version']} {verb}: {row['file_name']} "
                   f"{_size(row['size'])} sha256 {row['sha256']}")  # fmt: skip

    @releases.command("list")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.pass_obj
    def releases_list(api: Any, *, as_json: bool) -> None:
        """Every release, newest first."""
        rows = api.get("/api/v1/releases")
        if as_json:
            click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        table = Table(title=f"{len(rows)} releases")
        for column in ("version", "kind", "size", "created", "by", "bad", "file"):
            table.add_column(column)
        for row in rows:
            table.add_row(
                row["version"], row["kind"], _size(row["size"]), when(row["created_at"]),
                row["created_by"], "[red]bad[/]" if row["bad"] else "", row["file_name"],
            )  # fmt: skip
        Console(width=200).print(table)

    @releases.command("show")
    @click.argument("version")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.pass_obj
    def releases_show(api: Any, version: str, *, as_json: bool) -> None:
        """One release with its signed manifest."""
        row = api.get(f"/api/v1/releases/{version}")
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False, indent=2))
            return
        table = Table(show_header=False, title=f"release {row['version']}")
        table.add_column("field", style="bold")
        table.add_column("value")
        for field in ("file_name", "kind", "size", "sha256", "created_by", "notes"):
            value = row.get(field)
            table.add_row(field.replace("_", " "), "-" if value is None else str(value))
        table.add_row("created", when(row["created_at"]))
        if row["bad"]:
            table.add_row("bad", f"{when(row['bad_at'])} by {row['bad_by']}: {row['bad_reason']}")
        table.add_row("signed by", row["manifest"]["key_id"])
        Console(width=200).print(table)

    @releases.command("bad")
    @click.argument("version")
    @click.option("--reason", required=True, help="Why no outlet should install it.")
    @click.pass_obj
    def releases_bad(api: Any, version: str, reason: str) -> None:
        """Mark release VERSION bad: no new install starts from it."""
        row = api.post(f"/api/v1/releases/{version}/bad", {"reason": reason})
        click.echo(f"release {row['version']} marked bad by {row['bad_by']}: {row['bad_reason']}")
