"""``fleetctl alerts list|ack|silence``: the alert commands, registered on the main group."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import click
from rich.console import Console
from rich.table import Table

from fleet_server.fleetctl_format import when

_SEVERITY_STYLE = {"critical": "red", "warning": "yellow", "info": "dim"}


def _show(alert: dict[str, Any]) -> str:
    return f"alert {alert['id']} {alert['rule']} {alert['outlet_id']} {alert['state']}"


def register(cli: click.Group) -> None:
    """Add the ``alerts`` group to ``cli``."""

    @cli.group()
    def alerts() -> None:
        """Alerts: list, acknowledge, silence."""

    @alerts.command("list")
    @click.option("--all", "show_all", is_flag=True, help="Include resolved alerts.")
    @click.option("--outlet", "outlet_id", help="Only this outlet's alerts.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.pass_obj
    def alerts_list(api: Any, *, show_all: bool, outlet_id: str | None, as_json: bool) -> None:
        """Open alerts (newest first)."""
        path = f"/api/v1/alerts?state={'all' if show_all else 'open'}"
        if outlet_id:
            path += f"&outlet_id={outlet_id}"
        rows = api.get(path)
        if as_json:
            click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        table = Table(title=f"{len(rows)} alerts")
        for column in ("id", "rule", "outlet", "device", "severity", "state", "since", "ack",
                       "summary"):  # fmt: skip
            table.add_column(column)
        for row in rows:
            style = _SEVERITY_STYLE.get(row["severity"], "white")
            table.add_row(
                str(row["id"]),
                row["rule"],
                row["outlet_id"],
                row.get("device_id") or "",
                f"[{style}]{row['severity']}[/]",
                row["state"],
                when(row["opened_at"]),
                row.get("acked_by") or "",
                row["summary"],
            )
        Console(width=200).print(table)

    @alerts.command("ack")
    @click.argument("alert_id", type=int)
    @click.pass_obj
    def alerts_ack(api: Any, alert_id: int) -> None:
        """Acknowledge alert ALERT_ID."""
        click.echo(_show(api.post(f"/api/v1/alerts/{alert_id}/ack")) + " acknowledged")

    @alerts.command("silence")
    @click.argument("alert_id", type=int)
    @click.option("--minutes", type=click.IntRange(1, 43200), default=60, show_default=True)
    @click.option("--reason", required=True, help="Why nobody needs to be told (kept).")
    @click.pass_obj
    def alerts_silence(api: Any, alert_id: int, minutes: int, reason: str) -> None:
        """Silence notifications of alert ALERT_ID for MINUTES, saying why."""
        query = urlencode({"minutes": minutes, "reason": reason})
        alert = api.post(f"/api/v1/alerts/{alert_id}/silence?{query}")
        click.echo(_show(alert) + f" silenced until {when(alert['silenced_until'])}")
