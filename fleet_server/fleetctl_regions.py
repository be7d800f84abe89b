"""``fleetctl regions import FILE`` and ``fleetctl regions list``: regions and their map
outlines (docs/fleet-health.md, "Regions and outlines")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from fleet_server.fleetctl_registry import import_file


def _points(outline: list[list[Any]] | None) -> int:
    return sum(len(ring) for ring in outline or [])


def register(cli: click.Group) -> None:
    """Add the ``regions`` group to ``cli``."""

    @cli.group()
    def regions() -> None:
        """Regions (province, city, county, township) and their outlines on the map."""

    @regions.command("import")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.pass_obj
    def regions_import(api: Any, file: Path) -> None:
        """Import FILE (GeoJSON, or the JSON list `regions list --json` prints), upserting
        regions by code. Any bad region: its errors are printed and nothing is imported
        (exit 1)."""
        import_file(api, "/api/v1/regions/import", file, media="application/json")

    @regions.command("list")
    @click.option("--json", "as_json", is_flag=True,
                  help="Print JSON, a file `regions import` reads back.")  # fmt: skip
    @click.pass_obj
    def regions_list(api: Any, *, as_json: bool) -> None:
        """Every region: code, name, parent and the size of its outline."""
        rows = api.get("/api/v1/regions")
        if as_json:
            click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        table = Table(title=f"{len(rows)} regions")
        for column in ("code", "name", "parent", "outline"):
            table.add_column(column)
        for row in rows:
            outline = row.get("outline")
            drawn = f"{len(outline)} rings, {_points(outline)} points" if outline else "-"
            table.add_row(row["code"], row["name"], row.get("parent_code") or "-", drawn)
        Console().print(table)
