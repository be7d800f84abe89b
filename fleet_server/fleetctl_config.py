"""``fleetctl config …``: scope documents, history, diffs, rollback, dry runs, outlet
config and drift, over ``/api/v1/config`` (docs/config.md, "fleetctl config").

Exit codes: 0 done; 1 refused by the server (invalid document, stale version, unknown
scope or outlet), with the reason on stderr; 2 cannot reach or use the server.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

import click
import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fleet_server.fleetctl_format import when
from govedge_wire.config import leaves

_STATUS_STYLE = {
    "in_sync": "green",
    "pending": "yellow",
    "drifting": "red",
    "refused": "red",
    "unknown": "dim",
}


def _path(scope: str, tail: str = "") -> str:
    return f"/api/v1/config/{quote(scope, safe=':')}{tail}"


def _value(value: Any) -> str:
    return escape(json.dumps(value, ensure_ascii=False, sort_keys=True))


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _check(response: httpx.Response) -> Any:
    """The JSON of a success; a refusal explained on stderr and exit 1 (2 for 5xx)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success and body is not None:
        return body
    detail = body.get("detail") if isinstance(body, dict) else None
    if response.status_code == httpx.codes.PRECONDITION_FAILED:
        _fail(f"not stored, the scope changed meanwhile: {detail}")
    if isinstance(detail, list):
        lines = [f"  {'.'.join(map(str, p.get('loc', []))) or '(document)'}: {p.get('msg')}"
                 for p in detail if isinstance(p, dict)]  # fmt: skip
        _fail("the document is invalid:\n" + "\n".join(lines))
    if response.status_code < 500:
        _fail(str(detail or response.reason_phrase))
    _fail(f"fleet server answered {response.status_code}: {detail or response.text[:200]}", 2)


def _load(file: Path) -> Any:
    """A document from a JSON or TOML file."""
    try:
        if file.suffix.lower() == ".toml":
            return tomllib.loads(file.read_text(encoding="utf-8"))
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # TOMLDecodeError is a ValueError
        _fail(f"cannot read {file}: {exc}")


def _current_version(api: Any, scope: str) -> int:
    """The scope's current version, 0 when it is not set yet."""
    response = api.send("GET", _path(scope))
    if response.status_code == httpx.codes.NOT_FOUND:
        return 0
    return int(_check(response)["version"])


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


def register(cli: click.Group) -> None:
    """Add the ``config`` group to ``cli``."""

    @cli.group()
    def config() -> None:
        """Desired config: scopes, versions, outlets, drift."""

    @config.command("set")
    @click.argument("scope")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--comment", help="Why (kept with the version).")
    @click.option("--closed-hours-only", is_flag=True, help="Apply only when outlets are closed.")
    @click.option("--if-match", type=int, help="The version you edited (default: the current).")
    @click.pass_obj
    def config_set(
        api: Any, scope: str, file: Path, comment: str | None, *,
        closed_hours_only: bool, if_match: int | None,
    ) -> None:  # fmt: skip
        """Store FILE (JSON or TOML) as SCOPE's new document."""
        document = _load(file)
        expected = _current_version(api, scope) if if_match is None else if_match
        params = {"closed_hours_only": "true" if closed_hours_only else "false"}
        if comment:
            params["comment"] = comment
        row = _check(
            api.send("PUT", _path(scope), body=document, params=params,
                     headers={"If-Match": str(expected)})
        )  # fmt: skip
        click.echo(f"{row['scope']}: version {row['version']} stored (hash {row['hash'][:12]})")

    @config.command("get")
    @click.argument("scope")
    @click.option("--version", type=click.IntRange(1), help="An earlier version.")
    @click.option(
        "--json", "as_json", is_flag=True, help="The whole answer, not just the document."
    )
    @click.pass_obj
    def config_get(api: Any, scope: str, version: int | None, *, as_json: bool) -> None:
        """Print SCOPE's document (JSON; who and when on stderr)."""
        tail = f"/versions/{version}" if version else ""
        row = _check(api.send("GET", _path(scope, tail)))
        if as_json:
            _echo_json(row)
            return
        click.echo(f"# {row['scope']} version {row['version']} by {row['author']} at "
                   f"{when(row['created_at'])}", err=True)  # fmt: skip
        _echo_json(row["document"])

    @config.command("history")
    @click.argument("scope")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.pass_obj
    def config_history(api: Any, scope: str, *, as_json: bool) -> None:
        """Every version of SCOPE, newest first."""
        rows = _check(api.send("GET", _path(scope, "/versions")))
        if as_json:
            _echo_json(rows)
            return
        table = Table(title=f"{scope}: {len(rows)} versions")
        for column in ("version", "when", "author", "comment", "note"):
            table.add_column(column)
        for row in rows:
            notes = [f"rollback to {row['rolled_back_to']}"] if row["rolled_back_to"] else []
            notes += ["closed hours only"] if row["closed_hours_only"] else []
            table.add_row(str(row["version"]), when(row["created_at"]), escape(row["author"]),
                          escape(row["comment"] or ""), ", ".join(notes))  # fmt: skip
        Console(width=200).print(table)

    @config.command("diff")
    @click.argument("scope")
    @click.argument("from_version", type=click.IntRange(1))
    @click.argument("to_version", type=click.IntRange(1))
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.pass_obj
    def config_diff(
        api: Any, scope: str, from_version: int, to_version: int, *, as_json: bool
    ) -> None:
        """What changed in SCOPE from version FROM to version TO."""
        params = {"from": str(from_version), "to": str(to_version)}
        answer = _check(api.send("GET", _path(scope, "/diff"), params=params))
        if as_json:
            _echo_json(answer["changes"])
            return
        _print_changes(answer["changes"], f"{scope}: version {from_version} → {to_version}")

    @config.command("rollback")
    @click.argument("scope")
    @click.argument("version", type=click.IntRange(1))
    @click.option("--comment", help="Why (kept with the new version).")
    @click.pass_obj
    def config_rollback(api: Any, scope: str, version: int, comment: str | None) -> None:
        """Make SCOPE's document version VERSION's again (as a new version)."""
        current = _current_version(api, scope)
        body = {"version": version, "comment": comment}
        row = _check(api.send("POST", _path(scope, "/rollback"), body=body,
                              headers={"If-Match": str(current)}))  # fmt: skip
        click.echo(f"{row['scope']}: version {row['version']} stored, "
                   f"the document of version {version}")  # fmt: skip

    @config.command("show")
    @click.argument("outlet_id")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.pass_obj
    def config_show(api: Any, outlet_id: str, *, as_json: bool) -> None:
        """OUTLET's config: status, desired vs reported, and each value's scope."""
        view = _check(api.send("GET", f"/api/v1/outlets/{quote(outlet_id, safe='')}/config"))
        if as_json:
            _echo_json(view)
            return
        _print_view(view)

    @config.command("drift")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.pass_obj
    def config_drift(api: Any, *, as_json: bool) -> None:
        """Outlets not in sync, the longest-standing first."""
        rows = _check(api.send("GET", "/api/v1/config/drift"))
        if as_json:
            _echo_json(rows)
            return
        table = Table(title=f"{len(rows)} outlets not in sync")
        for column in ("outlet", "status", "since", "desired", "reported", "reason"):
            table.add_column(column)
        for row in rows:
            table.add_row(row["outlet_id"], _status(row["status"]), when(row["since"]),
                          str(row["desired_version"] or "-"), str(row["reported_version"] or "-"),
                          escape(row["reason"] or ""))  # fmt: skip
        Console(width=200).print(table)

    @config.command("validate")
    @click.argument("scope")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.pass_obj
    def config_validate(api: Any, scope: str, file: Path, *, as_json: bool) -> None:
        """Dry run: is FILE valid for SCOPE, and which outlets would change how."""
        body = {"scope": scope, "document": _load(file)}
        answer = _check(api.send("POST", "/api/v1/config/validate", body=body))
        if as_json:
            _echo_json(answer)
            return
        click.echo(f"valid; {answer['outlets_changed']} outlet(s) would change, "
                   f"{answer['outlets_taking_devices_away']} losing devices")  # fmt: skip
        for outlet in answer["outlets"]:
            _print_changes(outlet["changes"], f"outlet {outlet['outlet_id']}")
            for warning in outlet["takes_devices_away"]:
                click.echo(f"  warning: {outlet['outlet_id']}: {warning}")
            if outlet["too_large"]:
                click.echo(f"  warning: {outlet['outlet_id']}: effective config too large")


def _status(value: str) -> str:
    return f"[{_STATUS_STYLE.get(value, 'white')}]{value}[/]"


def _print_changes(changes: list[dict[str, Any]], title: str) -> None:
    table = Table(title=f"{title}: {len(changes)} changes")
    for column in ("path", "op", "from", "to"):
        table.add_column(column)
    for change in changes:
        table.add_row(change["path"], change["op"], _value(change["from"]), _value(change["to"]))
    Console(width=200).print(table)


def _print_view(view: dict[str, Any]) -> None:
    desired, reported = view["desired"] or {}, view["reported"] or {}
    refusal, effective = view["last_refusal"], view["effective"]
    head = Table(show_header=False, title=f"outlet {view['outlet_id']} config")
    head.add_column("field", style="bold")
    head.add_column("value")
    head.add_row("status", f"{_status(view['status'])} since {when(view['since'])}")
    if view["reason"]:
        head.add_row("reason", escape(view["reason"]))
    head.add_row(
        "desired",
        f"version {desired.get('version', '-')} "
        f"hash {(desired.get('hash') or '-')[:12]} issued {when(desired.get('issued_at'))}",
    )
    head.add_row(
        "reported",
        f"version {reported.get('version', '-')} "
        f"hash {(reported.get('hash') or '-')[:12]} at {when(reported.get('at'))}",
    )
    if refusal:
        head.add_row(
            "last refusal",
            escape(
                f"version {refusal['version']} {refusal['reason']} "
                f"{refusal['detail'] or ''} at {when(refusal['at'])}"
            ),
        )
    pending = "yes" if effective["pending_publication"] else "no"
    head.add_row("new config waiting", pending)
    head.add_row("layers", " → ".join(effective["layers"]))
    Console(width=200).print(head)  # fmt: skip
    values = Table(title="effective values and the scope that set each")
    for column in ("path", "value", "scope"):
        values.add_column(column)
    flat = dict(leaves(effective["config"]))
    for path, scope in view["provenance"].items():
        values.add_row(path, _value(flat.get(path)), scope)
    Console(width=200).print(values)
