"""``fleetctl outlets import FILE`` and ``fleetctl outlets export``: the outlet registry
as a CSV or JSON file (docs/outlet-registry.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

_FORMATS = ("csv", "json")


def _format_of(file: Path, chosen: str | None) -> str:
    if chosen:
        return chosen
    suffix = file.suffix.lower().lstrip(".")
    if suffix not in _FORMATS:
        raise click.UsageError(f"{file.name}: name the format with --format csv|json")
    return suffix


def refusal(response: Any) -> str:
    """The answer's detail and, one a line, each row error (row, field, message)."""
    try:
        body = response.json()
    except ValueError:
        return str(response.text[:200])
    lines = [str(body.get("detail", ""))]
    lines += [f"  row {e['row']}, {e['field']}: {e['message']}" for e in body.get("errors") or []]
    return "\n".join(lines)


def import_file(
    api: Any, path: str, file: Path, *, media: str, params: dict[str, str] | None = None
) -> None:
    """POST ``file`` to ``path`` and print what the import did, or its refusal with
    each row error (exit 1: nothing was imported)."""
    response = api.send(
        "POST", path, params=params, headers={"Content-Type": media},
        content=file.read_bytes(), forbidden_returns=True,
    )  # fmt: skip
    if response.is_error:
        click.echo(f"error: {refusal(response)}", err=True)
        sys.exit(1)
    counts = response.json()
    click.echo(f"{file.name}: {counts['created']} created, {counts['updated']} updated, "
               f"{counts['unchanged']} unchanged")  # fmt: skip


def register(cli: click.Group) -> None:
    """Add ``import`` and ``export`` to the ``outlets`` group of ``cli``."""
    outlets = cli.commands["outlets"]
    assert isinstance(outlets, click.Group)

    @outlets.command("import")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--format", "fmt", type=click.Choice(_FORMATS), default=None,
                  help="csv or json (default: from the file name).")  # fmt: skip
    @click.pass_obj
    def outlets_import(api: Any, file: Path, fmt: str | None) -> None:
        """Import FILE into the outlet registry (upsert by id). Any bad row: its errors
        are printed and nothing is imported (exit 1)."""
        chosen = _format_of(file, fmt)
        media = "application/json" if chosen == "json" else "text/csv"
        import_file(api, "/api/v1/outlets/import", file, media=media, params={"format": chosen})

    @outlets.command("export")
    @click.option("--format", "fmt", type=click.Choice(_FORMATS), default="csv",
                  show_default=True)  # fmt: skip
    @click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
                  default=None, help="Write here instead of stdout.")  # fmt: skip
    @click.pass_obj
    def outlets_export(api: Any, fmt: str, output: Path | None) -> None:
        """Write the registry (the outlets your scope covers) as CSV or JSON."""
        response = api.send("GET", "/api/v1/outlets/export", params={"format": fmt})
        if response.is_error:
            click.echo(f"error: {refusal(response)}", err=True)
            sys.exit(1)
        if output is None:
            click.echo(response.text, nl=False)
        else:
            output.write_text(response.text, encoding="utf-8")
