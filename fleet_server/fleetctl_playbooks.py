"""``fleetctl playbooks list|run|runs|show|cancel``: playbook runs (docs/playbook-runs.md);
``fleetctl playbook run NAME --outlets a,b|--region R [--check]``, the same run watched
by default, as the technicians' guide spells it."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from fleet_server.fleetctl_format import when
from fleet_server.fleetctl_playbook_watch import watch


def extra_var(text: str) -> tuple[str, Any]:
    """``k=v`` → (k, v), v read as JSON when it is (numbers, true, lists), else text."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise click.BadParameter(f"{text!r}: expected KEY=VALUE")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def _run_options(command: Any) -> Any:
    """The options ``playbooks run`` and ``playbook run`` share: the targets besides the
    outlet list, extra vars, check mode, opening hours and forks."""
    options = [
        click.option("--region", "regions", multiple=True,
                     help="A region-code prefix (repeatable)."),
        click.option("--kind", "kinds", multiple=True, help="An outlet kind (repeatable)."),
        click.option("--tag", "tags", multiple=True, help="An outlet tag (repeatable)."),
        click.option("--alert-rule", "alert_rules", multiple=True,
                     help="Outlets with an open alert of this rule (repeatable)."),
        click.option("-e", "--extra-var", "extra", multiple=True,
                     help="KEY=VALUE (repeatable)."),
        click.option("--check", is_flag=True, help="Ansible check mode: change nothing."),
        click.option("--during-opening-hours", is_flag=True,
                     help="Also run on outlets open now (else held)."),
        click.option("--forks", type=click.IntRange(1, 100), default=10, show_default=True),
    ]  # fmt: skip
    for option in reversed(options):  # as if stacked as decorators, in this order
        command = option(command)
    return command


def _hosts_table(run: dict[str, Any]) -> Table:
    table = Table(title=f"run {run['id']} {run['playbook']}: {run['status']}")
    for column in ("outlet", "status", "ok", "changed", "failed", "unreachable", "last task"):
        table.add_column(column)
    for host in run.get("hosts", []):
        status = host["status"]
        if status == "held":
            status = f"held ({host['held_reason']})"
        table.add_row(
            host["outlet_id"], status, str(host["ok"]), str(host["changed"]),
            str(host["failed"]), str(host["unreachable"]), host["last_task"] or "-",
        )  # fmt: skip
    return table


def start_run(
    api: Any,
    playbook: str,
    target: dict[str, list[str]],
    extra: tuple[str, ...],
    *,
    check: bool,
    during_opening_hours: bool,
    forks: int,
    follow: bool,
) -> None:
    """Start a run; with ``follow``, watch it and exit 1 unless it succeeded."""
    if not any(target.values()):
        raise click.UsageError(
            "name the outlets: --outlet(s), --region, --kind, --tag or --alert-rule"
        )
    body = {
        "playbook": playbook, "target": target,
        "extra_vars": dict(extra_var(text) for text in extra),
        "check": check, "during_opening_hours": during_opening_hours, "forks": forks,
    }  # fmt: skip
    run = api.post("/api/v1/playbook-runs", body)
    held = [h["outlet_id"] for h in run["hosts"] if h["status"] == "held"]
    running = len(run["hosts"]) - len(held)
    click.echo(f"run {run['id']} started: {running} outlets" + (
        f", {len(held)} held back (open now): {', '.join(held)}" if held else ""))  # fmt: skip
    if not follow:
        return
    # Bars redraw in place on a terminal; piped, they print once at the end, wide.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    done = watch(api, run["id"], run, console=console)
    console.print(_hosts_table(done))
    if done["status"] != "successful":
        sys.exit(1)


def _listed(values: tuple[str, ...]) -> list[str]:
    """``("a,b", "c")`` → ``["a", "b", "c"]``."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def register(cli: click.Group) -> None:
    """Add the ``playbooks`` group to ``cli``."""

    @cli.group()
    def playbooks() -> None:
        """Ansible playbooks run through the fleet server: list, run, watch, cancel."""

    @playbooks.command("list")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.pass_obj
    def playbooks_list(api: Any, *, as_json: bool) -> None:
        """The playbooks offered and their variables."""
        rows = api.get("/api/v1/playbooks")
        if as_json:
            click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        table = Table(title=f"{len(rows)} playbooks")
        for column in ("playbook", "description", "variables"):
            table.add_column(column)
        for row in rows:
            names = [
                f"{name}{'*' if spec.get('required') else ''}:{spec.get('type', 'str')}"
                for name, spec in row["variables"].items()
            ]
            table.add_row(row["name"], row["description"], ", ".join(names) or "-")
        Console(width=200).print(table)

    @playbooks.command("run")
    @click.argument("playbook")
    @click.option("--outlet", "outlets", multiple=True, help="An outlet id (repeatable).")
    @_run_options
    @click.option("--watch", "follow", is_flag=True, help="Show per-host progress until done.")
    @click.pass_obj
    def playbooks_run(
        api: Any, playbook: str, outlets: tuple[str, ...], regions: tuple[str, ...],
        kinds: tuple[str, ...], tags: tuple[str, ...], alert_rules: tuple[str, ...],
        extra: tuple[str, ...], *, check: bool,
        during_opening_hours: bool, forks: int, follow: bool,
    ) -> None:  # fmt: skip
        """Run PLAYBOOK on the outlets chosen by --outlet, --region, --kind, --tag and
        --alert-rule (the union)."""
        target = {"outlets": list(outlets), "regions": list(regions), "kinds": list(kinds),
                  "tags": list(tags), "alert_rules": list(alert_rules)}  # fmt: skip
        start_run(
            api, playbook, target, extra, check=check,
            during_opening_hours=during_opening_hours, forks=forks, follow=follow,
        )  # fmt: skip

    @playbooks.command("runs")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.pass_obj
    def playbooks_runs(api: Any, *, as_json: bool) -> None:
        """Recent runs, newest first."""
        rows = api.get("/api/v1/playbook-runs")
        if as_json:
            click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        table = Table(title=f"{len(rows)} runs")
        for column in ("id", "playbook", "status", "check", "by", "created", "finished"):
            table.add_column(column)
        for row in rows:
            table.add_row(
                str(row["id"]), row["playbook"], row["status"], "check" if row["check"] else "",
                row["created_by"], when(row["created_at"]), when(row["finished_at"]),
            )  # fmt: skip
        Console(width=200).print(table)

    @playbooks.command("show")
    @click.argument("run_id", type=int)
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.pass_obj
    def playbooks_show(api: Any, run_id: int, *, as_json: bool) -> None:
        """One run with each outlet's result."""
        run = api.get(f"/api/v1/playbook-runs/{run_id}")
        if as_json:
            click.echo(json.dumps(run, ensure_ascii=False, indent=2))
            return
        Console(width=200).print(_hosts_table(run))

    @playbooks.command("cancel")
    @click.argument("run_id", type=int)
    @click.pass_obj
    def playbooks_cancel(api: Any, run_id: int) -> None:
        """Stop a running run."""
        run = api.post(f"/api/v1/playbook-runs/{run_id}/cancel")
        click.echo(f"run {run['id']}: cancel asked by {run['canceled_by']}")

    @cli.group()
    def playbook() -> None:
        """Run one playbook (``playbooks run``, watched by default)."""

    @playbook.command("run")
    @click.argument("name")
    @click.option("--outlets", multiple=True, help="Outlet ids, comma-separated (repeatable).")
    @_run_options
    @click.option("--watch/--no-watch", "follow", default=True, show_default=True,
                  help="Show a progress bar per host until done.")  # fmt: skip
    @click.pass_obj
    def playbook_run(
        api: Any, name: str, outlets: tuple[str, ...], regions: tuple[str, ...],
        kinds: tuple[str, ...], tags: tuple[str, ...], alert_rules: tuple[str, ...],
        extra: tuple[str, ...], *, check: bool,
        during_opening_hours: bool, forks: int, follow: bool,
    ) -> None:  # fmt: skip
        """Run playbook NAME (``provision_outlet`` or ``provision_outlet.yml``) on the
        outlets chosen by --outlets, --region, --kind, --tag and --alert-rule (the union)."""
        if not name.endswith((".yml", ".yaml")):
            name += ".yml"
        target = {
            "outlets": _listed(outlets), "regions": _listed(regions), "kinds": list(kinds),
            "tags": list(tags), "alert_rules": list(alert_rules),
        }  # fmt: skip
        start_run(
            api, name, target, extra, check=check,
            during_opening_hours=during_opening_hours, forks=forks, follow=follow,
        )  # fmt: skip
