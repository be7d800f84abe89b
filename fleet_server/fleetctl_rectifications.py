"""``fleetctl rectifications list|follow-up``: 差评 tickets from a terminal.

The same API as the 好差评 page (``/api/v1/rectifications``): a county operator's
scope and a viewer's masked notes hold here too.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import click
from rich.console import Console
from rich.table import Table

from fleet_server.fleetctl_format import when

# The follow-up kinds the API accepts (it refuses any other with its reason).
_ACTIONS = ("回访", "整改", "反馈", "解释说明")


def _line(ticket: dict[str, Any]) -> str:
    late = " overdue" if ticket["overdue"] else ""
    return f"rectification {ticket['id']} {ticket['outlet_id']} {ticket['status']}{late}"


def register(cli: click.Group) -> None:
    """Add the ``rectifications`` group to ``cli``."""

    @cli.group()
    def rectifications() -> None:
        """差评 rectifications: list them, record a follow-up (回访/整改/反馈)."""

    @rectifications.command("list")
    @click.option(
        "--status",
        "status",
        type=click.Choice(["open", "closed", "all"]),
        default="open",
        show_default=True,
    )
    @click.option("--overdue", is_flag=True, help="Only tickets past their deadline.")
    @click.option("--outlet", "outlet_id", help="Only this outlet's tickets.")
    @click.option("--limit", type=click.IntRange(1, 500), default=100, show_default=True)
    @click.option("--offset", type=click.IntRange(0), default=0)
    @click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
    @click.pass_obj
    def rectifications_list(
        api: Any,
        *,
        status: str,
        overdue: bool,
        outlet_id: str | None,
        limit: int,
        offset: int,
        as_json: bool,
    ) -> None:
        """Tickets, newest first, one page (--limit/--offset)."""
        query: dict[str, Any] = {"limit": limit, "offset": offset}
        if status != "all":
            query["status"] = status
        if overdue:
            query["overdue"] = "true"
        if outlet_id:
            query["outlet"] = outlet_id
        page = api.get(f"/api/v1/rectifications?{urlencode(query)}")
        if as_json:
            click.echo(json.dumps(page, ensure_ascii=False, indent=2))
            return
        items = page["items"]
        shown = f"{offset + 1}-{offset + len(items)}" if items else "0"
        table = Table(title=f"rectifications {shown} of {page['total']}")
        for column in ("id", "outlet", "window", "stars", "case", "opened", "deadline",
                       "status", "follow-ups"):  # fmt: skip
            table.add_column(column)
        for t in items:
            state = t["status"] + (" [red]overdue[/]" if t["overdue"] else "")
            table.add_row(
                str(t["id"]),
                t["outlet_id"],
                t.get("window") or "-",
                "-" if t.get("stars") is None else str(t["stars"]),
                t.get("case_number") or "",
                when(t["opened_at"]),
                when(t["deadline_at"]),
                state,
                str(len(t["follow_ups"])),
            )
        Console(width=200).print(table)

    @rectifications.command("follow-up")
    @click.argument("rectification_id", type=int)
    @click.option("--action", type=click.Choice(_ACTIONS), required=True)
    @click.option("--note", required=True, help="What was done or said (kept, sealed at rest).")
    @click.option("--by", "by", required=True, help="Who did it (a name, not the citizen's).")
    @click.option("--closes", is_flag=True, help="This follow-up closes the ticket.")
    @click.pass_obj
    def rectifications_follow_up(
        api: Any, rectification_id: int, *, action: str, note: str, by: str, closes: bool
    ) -> None:
        """Record a follow-up on ticket RECTIFICATION_ID."""
        ticket = api.post(
            f"/api/v1/rectifications/{rectification_id}/follow-up",
            {"action": action, "note": note, "by": by, "closes": closes},
        )
        click.echo(f"{_line(ticket)}: {len(ticket['follow_ups'])} follow-ups")
