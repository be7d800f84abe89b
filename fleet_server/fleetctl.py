"""fleetctl: the operators' and technicians' command line for the fleet server's REST API.

Readable tables by default (rich), ``--json`` for scripts. Any failure to reach the
server is one line on stderr and exit code 2; an unknown outlet is exit code 1.
"""

from __future__ import annotations

import json
import ssl
import sys
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

import click
import httpx
from rich.console import Console
from rich.table import Table

from fleet_server import (
    fleetctl_alerts,
    fleetctl_archives,
    fleetctl_config,
    fleetctl_playbooks,
    fleetctl_rectifications,
    fleetctl_regions,
    fleetctl_registry,
    fleetctl_releases,
    fleetctl_rollouts,
    fleetctl_security,
    fleetctl_users,
)

DEFAULT_SERVER = "http://127.0.0.1:8080"
_STATE_STYLE = {"online": "green", "offline": "red", "stale": "yellow", "unknown": "dim"}


class _Api:
    """A thin client that turns transport errors into one-line exits."""

    def __init__(
        self,
        server: str,
        *,
        timeout: float,
        token: str | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.server = server.rstrip("/")
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.verify = verify

    def get(self, path: str) -> Any:
        url = f"{self.server}{path}"
        try:
            response = httpx.get(
                url, timeout=self.timeout, headers=self.headers, verify=self.verify
            )
        except httpx.HTTPError as exc:
            _die(f"cannot reach fleet server at {self.server}: {exc.__class__.__name__}: {exc}")
        if response.status_code == httpx.codes.NOT_FOUND:
            detail = _detail(response)
            click.echo(f"error: {detail}", err=True)
            sys.exit(1)
        if response.status_code in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
            _die(f"not allowed ({response.status_code}): {_detail(response)}; see --token")
        if response.is_error:
            _die(f"fleet server answered {response.status_code}: {_detail(response)}")
        return self._json(response)

    def post(self, path: str, body: Any = None) -> Any:
        url = f"{self.server}{path}"
        try:
            response = httpx.post(
                url, timeout=self.timeout, headers=self.headers, verify=self.verify, json=body
            )
        except httpx.HTTPError as exc:
            _die(f"cannot reach fleet server at {self.server}: {exc.__class__.__name__}: {exc}")
        if response.status_code in (httpx.codes.NOT_FOUND, httpx.codes.CONFLICT):
            click.echo(f"error: {_detail(response)}", err=True)
            sys.exit(1)
        if response.status_code in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
            _die(f"not allowed ({response.status_code}): {_detail(response)}; see --token")
        if response.is_error:
            _die(f"fleet server answered {response.status_code}: {_detail(response)}")
        return self._json(response)

    def send(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        forbidden_returns: bool = False,
    ) -> httpx.Response:
        """Any call; only transport failures, 401 and 403 exit here, the rest is returned
        (a 403 too with ``forbidden_returns``, for answers that say more than a refusal)."""
        try:
            response = httpx.request(
                method, f"{self.server}{path}", json=body, params=params, content=content,
                headers=self.headers | (headers or {}), timeout=self.timeout, verify=self.verify,
            )  # fmt: skip
        except httpx.HTTPError as exc:
            _die(f"cannot reach fleet server at {self.server}: {exc.__class__.__name__}: {exc}")
        denied = {httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN}
        if forbidden_returns:
            denied.discard(httpx.codes.FORBIDDEN)
        if response.status_code in denied:
            _die(f"not allowed ({response.status_code}): {_detail(response)}; see --token")
        return response

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            _die(f"fleet server at {self.server} did not answer JSON")


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return str(body)[:200]


def _die(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _state(value: str | None) -> str:
    state = value or "unknown"
    return f"[{_STATE_STYLE.get(state, 'white')}]{state}[/]"


def _when(value: str | None) -> str:
    if not value:
        return "-"
    return value.replace("T", " ").split(".")[0].removesuffix("Z").removesuffix("+00:00")


@click.group()
@click.option(
    "--server",
    envvar="GOVEDGE_SERVER",
    default=DEFAULT_SERVER,
    show_default=True,
    help="Fleet server base URL (or GOVEDGE_SERVER).",
)
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for the server.")
@click.option(
    "--token",
    envvar="GOVEDGE_TOKEN",
    default=None,
    help="API token (or GOVEDGE_TOKEN); from `fleet-server users add`.",
)
@click.option(
    "--ca-file",
    envvar="GOVEDGE_CA_FILE",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Also trust this CA (PEM) for an https:// server, e.g. the fleet CA's ca.crt "
    "(or GOVEDGE_CA_FILE).",
)
@click.pass_context
def cli(
    ctx: click.Context, server: str, timeout: float, token: str | None, ca_file: Path | None
) -> None:
    """Inspect and operate a govedge fleet."""
    verify: ssl.SSLContext | bool = True
    if ca_file is not None:
        verify = ssl.create_default_context()
        try:
            verify.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            _die(f"cannot use {ca_file} as a CA: {exc}")
    ctx.obj = _Api(server, timeout=timeout, token=token, verify=verify)


@cli.group()
def outlets() -> None:
    """Outlets and their agents."""


@outlets.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def outlets_list(api: _Api, *, as_json: bool) -> None:
    """List every outlet with its online state."""
    rows: list[dict[str, Any]] = []
    while True:  # every page: the list is paged at 1,000 outlets
        page = api.get(f"/api/v1/outlets?limit=1000&offset={len(rows)}")
        rows.extend(page["items"])
        if not page["items"] or len(rows) >= page["total"]:
            break
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table(title=f"{len(rows)} outlets")
    for column in ("outlet", "state", "since", "last seen", "agent", "session", "seq"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["outlet_id"],
            _state(row.get("state")),
            _when(row.get("state_since")),
            _when(row.get("last_seen")),
            row.get("agent_version") or "-",
            str(row.get("session", "-")),
            str(row.get("last_seq", "-")),
        )
    Console().print(table)


@outlets.command("show")
@click.argument("outlet_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def outlets_show(api: _Api, outlet_id: str, *, as_json: bool) -> None:
    """Show one outlet: presence, agent, devices, latest host metrics."""
    row = api.get(f"/api/v1/outlets/{outlet_id}")
    if as_json:
        click.echo(json.dumps(row, ensure_ascii=False, indent=2))
        return
    table = Table(show_header=False, title=f"outlet {row['outlet_id']}")
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("state", _state(row.get("state")))
    for field in ("state_since", "last_seen"):
        table.add_row(field.replace("_", " "), _when(row.get(field)))
    for field in ("agent_version", "hostname", "os", "session", "last_seq", "config_version"):
        value = row.get(field)
        table.add_row(field.replace("_", " "), "-" if value is None else str(value))
    devices = row.get("devices") or []
    table.add_row("devices", ", ".join(d.get("device_id", "?") for d in devices) or "none")
    for name, value in sorted((row.get("last_metrics") or {}).items()):
        table.add_row(f"  {name}", str(value))
    Console().print(table)


@cli.group("dead-letters")
def dead_letters() -> None:
    """Transactions upstream refused or that ran out of retries."""


@dead_letters.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include dead letters already replayed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def dead_letters_list(api: _Api, *, show_all: bool, as_json: bool) -> None:
    """List dead letters, newest first (not yet replayed unless --all)."""
    rows = api.get("/api/v1/dead-letters" + ("?include_replayed=true" if show_all else ""))
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table(title=f"{len(rows)} dead letters")
    for column in ("id", "tx", "outlet", "kind", "target", "reason", "HTTP", "tries", "when"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["tx_id"],
            row["outlet_id"],
            row["tx_kind"],
            row.get("target") or "-",
            row["reason"],
            str(row.get("status_code") or "-"),
            str(row["attempts"]),
            _when(row.get("created_at")),
        )
    Console().print(table)


@dead_letters.command("show")
@click.argument("dead_letter_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def dead_letters_show(api: _Api, dead_letter_id: int, *, as_json: bool) -> None:
    """Show one dead letter: reason, masked applicant, every attempt."""
    row = api.get(f"/api/v1/dead-letters/{dead_letter_id}")
    if as_json:
        click.echo(json.dumps(row, ensure_ascii=False, indent=2))
        return
    table = Table(show_header=False, title=f"dead letter {row['id']}")
    table.add_column("field", style="bold")
    table.add_column("value")
    for field in (
        "tx_id", "outlet_id", "tx_kind", "target", "reason", "detail", "status_code",
        "attempts", "item_code", "region_code", "window", "transaction_state",
    ):  # fmt: skip
        value = row.get(field)
        table.add_row(field.replace("_", " "), "-" if value is None else str(value))
    table.add_row("created", _when(row.get("created_at")))
    table.add_row("replayed", _when(row.get("replayed_at")))
    applicant = row.get("applicant") or {}
    if applicant:
        table.add_row("applicant", f"{applicant.get('name', '')} {applicant.get('id_number', '')}")
    for attempt in row.get("attempt_history") or []:
        table.add_row(
            f"  attempt {attempt['attempt']}",
            f"{_when(attempt['at'])} {attempt['outcome']} {attempt.get('status_code') or ''}"
            f" {attempt.get('error') or ''}".rstrip(),
        )
    Console().print(table)


@dead_letters.command("replay")
@click.argument("dead_letter_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def dead_letters_replay(api: _Api, dead_letter_id: int, *, as_json: bool) -> None:
    """Route and deliver the transaction again (after fixing the cause)."""
    row = api.post(f"/api/v1/dead-letters/{dead_letter_id}/replay")
    if as_json:
        click.echo(json.dumps(row, ensure_ascii=False, indent=2))
        return
    click.echo(
        f"dead letter {row['id']} ({row['outlet_id']} {row['tx_id']}) queued for delivery again"
    )


@cli.group()
def transactions() -> None:
    """Where a transaction is; named by its outlet and its tx_id (the app's key)."""


@transactions.command("show")
@click.argument("outlet_id")
@click.argument("tx_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def transactions_show(api: _Api, outlet_id: str, tx_id: str, *, as_json: bool) -> None:
    """Show one transaction of one outlet: state, upstream key, case number, attempts."""
    row = api.get(
        f"/api/v1/outlets/{quote(outlet_id, safe='')}/transactions/{quote(tx_id, safe='')}"
    )
    if as_json:
        click.echo(json.dumps(row, ensure_ascii=False, indent=2))
        return
    table = Table(show_header=False, title=f"transaction {row['tx_id']} of {row['outlet_id']}")
    table.add_column("field", style="bold")
    table.add_column("value")
    for field in (
        "tx_kind", "state", "idempotency_key", "target", "attempts", "case_number",
        "item_code", "region_code", "window", "last_error",
    ):  # fmt: skip
        value = row.get(field)
        table.add_row(field.replace("_", " "), "-" if value is None else str(value))
    table.add_row("received", _when(row.get("received_at")))
    table.add_row("delivered", _when(row.get("delivered_at")))
    for attempt in row.get("history") or []:
        table.add_row(
            f"  attempt {attempt['attempt']}",
            f"{_when(attempt['at'])} {attempt['outcome']} {attempt.get('status_code') or ''}"
            f" {attempt.get('error') or ''}".rstrip(),
        )
    Console().print(table)


fleetctl_security.register(cli)
fleetctl_registry.register(cli)
fleetctl_archives.register(cli)
fleetctl_regions.register(cli)
fleetctl_users.register(cli)
fleetctl_alerts.register(cli)
fleetctl_config.register(cli)
fleetctl_releases.register(cli)
fleetctl_rollouts.register(cli)
fleetctl_playbooks.register(cli)
fleetctl_rectifications.register(cli)


def main() -> None:
    """Console-script entry point."""
    cli()
