"""``fleetctl outlets archives OUTLET`` and ``fleetctl outlets archive OUTLET ID``: the
archives playbook runs fetched from an outlet PC (``diagnose_outlet``,
``decommission_outlet``; docs/playbook-runs.md, "Archives"): listed, and downloaded
with their SHA-256 checked against the server's record."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import httpx
from rich.console import Console
from rich.table import Table

from fleet_server.fleetctl_registry import refusal


def register(cli: click.Group) -> None:
    """Add ``archives`` and ``archive`` to the ``outlets`` group of ``cli``."""
    outlets = cli.commands["outlets"]
    assert isinstance(outlets, click.Group)

    @outlets.command("archives")
    @click.argument("outlet_id")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.pass_obj
    def outlets_archives(api: Any, outlet_id: str, *, as_json: bool) -> None:
        """The archives runs fetched from OUTLET_ID's PC, newest first (200 at most)."""
        rows = api.get(f"/api/v1/outlets/{quote(outlet_id, safe='')}/archives")
        if as_json:
            click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        table = Table(title=f"{len(rows)} archives of {outlet_id}")
        for column in ("id", "name", "size", "run", "fetched"):
            table.add_column(column)
        for row in rows:
            table.add_row(str(row["id"]), row["name"], f"{row['size']:,}", str(row["run_id"]),
                          row["created_at"][:19].replace("T", " "))  # fmt: skip
        Console().print(table)

    @outlets.command("archive")
    @click.argument("outlet_id")
    @click.argument("archive_id", type=click.IntRange(min=1))
    @click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
                  default=None, help="Write here (default: the archive's name, here).")  # fmt: skip
    @click.option("--force", is_flag=True, help="Replace an existing file.")
    @click.pass_obj
    def outlets_archive(
        api: Any, outlet_id: str, archive_id: int, output: Path | None, *, force: bool
    ) -> None:
        """Download archive ARCHIVE_ID of OUTLET_ID (technician) and check its SHA-256."""
        base = f"/api/v1/outlets/{quote(outlet_id, safe='')}/archives"
        listed = {row["id"]: row for row in api.get(base)}
        record = listed.get(archive_id)
        target = output or Path(record["name"] if record else f"archive-{archive_id}.tar.gz")
        if target.exists() and not force:
            click.echo(f"error: {target} exists (--force replaces it)", err=True)
            sys.exit(1)
        digest, size = _download(api, f"{base}/{archive_id}", target)
        if record is None:  # older than the 200 the list holds: nothing to check against
            click.echo(f"{target}: {size:,} bytes (not in the recent list: not checked)")
            return
        if digest != record["sha256"]:
            target.unlink()
            click.echo(f"error: {target.name}: SHA-256 {digest} is not the recorded "
                       f"{record['sha256']}; the file was removed", err=True)  # fmt: skip
            sys.exit(1)
        click.echo(f"{target}: {size:,} bytes, SHA-256 checked")


def _download(api: Any, path: str, target: Path) -> tuple[str, int]:
    """Stream ``path`` into ``target`` (through a partial file); (SHA-256, size)."""
    partial = target.with_name(target.name + ".part")
    digest, size = hashlib.sha256(), 0
    try:
        with httpx.stream("GET", f"{api.server}{path}", headers=api.headers,
                          timeout=api.timeout, verify=api.verify) as response:  # fmt: skip
            if response.is_error:
                response.read()
                click.echo(f"error: {response.status_code}: {refusal(response)}", err=True)
                sys.exit(1)
            with partial.open("wb") as out:
                for chunk in response.iter_bytes():
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
    except httpx.HTTPError as exc:
        partial.unlink(missing_ok=True)
        click.echo(f"error: cannot reach fleet server at {api.server}: {exc}", err=True)
        sys.exit(1)
    partial.replace(target)
    return digest.hexdigest(), size
