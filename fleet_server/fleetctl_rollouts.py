"""``fleetctl rollouts create|list|show|pause|resume|abort|watch``: update campaigns.

A campaign installs one release on a target set of outlets in waves (docs/updates.md).
The server runs it; these commands start, inspect, steer and follow it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

from fleet_server.fleetctl_format import when

# Per-outlet states in the order an install moves through them (docs/updates.md).
STATES = (
    "pending",
    "scheduled",
    "downloading",
    "verifying",
    "installing",
    "restarting",
    "healthy",
    "failed",
    "rolled_back",
    "skipped",
)
_DONE = frozenset({"healthy", "failed", "rolled_back", "skipped"})
_BAD = frozenset({"failed", "rolled_back", "skipped"})
_ENDED = frozenset({"completed", "aborted"})
_STYLE = {"running": "cyan", "paused": "yellow", "aborted": "red", "completed": "green"}
DEFAULT_WAVES = "1,1%,10%,50%,100%"


def _wave(text: str) -> int | str:
    """One wave size: a count (``25``) or a share of the target (``10%``)."""
    text = text.strip()
    if text.endswith("%"):
        try:
            share = float(text[:-1])
        except ValueError:
            share = -1.0
        if not 0 < share <= 100:
            raise click.BadParameter(f"wave {text!r}: a share must be above 0% and at most 100%")
        return text
    if not text.isdigit() or int(text) < 1:
        raise click.BadParameter(f"wave {text!r}: give a count of at least 1 or a share like 10%")
    return int(text)


def parse_waves(text: str) -> list[int | str]:
    """``1,1%,10%,50%,100%`` → ``[1, "1%", "10%", "50%", "100%"]``."""
    return [_wave(part) for part in text.split(",") if part.strip()]


def _outlets_file(path: Path) -> list[str]:
    """Outlet ids from a file: one per line; blank lines and ``#`` comments ignored."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def _refused(response: httpx.Response) -> str:
    """The API's reason, readable: a 422 lists each bad field."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return response.text[:300] or response.reason_phrase
    if isinstance(detail, list):
        parts = []
        for item in detail:
            where = ".".join(str(p) for p in item.get("loc", []) if p != "body")
            parts.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
        return "; ".join(parts)
    return str(detail)


def _call(api: Any, method: str, path: str, body: Any = None, **params: Any) -> Any:
    """One API call; a refusal (404, 409, 422, ...) is one clear line and exit 1."""
    query = {k: str(v) for k, v in params.items() if v is not None}
    response = api.send(method, path, body=body, params=query or None)
    if response.is_error:
        what = {404: "not found", 409: "refused", 422: "invalid"}.get(response.status_code)
        label = what or f"fleet server answered {response.status_code}"
        click.echo(f"error: {label} ({response.status_code}): {_refused(response)}", err=True)
        sys.exit(1 if what else 2)
    return response.json()


def _counts(counts: dict[str, int]) -> str:
    return " ".join(f"{s} {counts[s]}" for s in STATES if counts.get(s)) or "-"


def _progress(counts: dict[str, int], size: int | None = None) -> tuple[int, int]:
    total = size if size is not None else sum(counts.values())
    return sum(counts.get(s, 0) for s in _DONE), total


def _bar(counts: dict[str, int], size: int, width: int = 30) -> str:
    """A bar of the wave: green healthy, red failed/rolled back/skipped, rest waiting."""
    if size <= 0:
        return "[dim]" + "·" * width + "[/]"
    good = round(width * counts.get("healthy", 0) / size)
    bad = round(width * sum(counts.get(s, 0) for s in _BAD) / size)
    bad = min(bad, width - good)
    busy = sum(counts.get(s, 0) for s in STATES[2:6])
    moving = min(round(width * busy / size), width - good - bad)
    rest = width - good - bad - moving
    return f"[green]{'█' * good}[/][red]{'█' * bad}[/][cyan]{'▒' * moving}[/][dim]{'·' * rest}[/]"


def campaign_table(row: dict[str, Any]) -> Table:
    """The campaign's waves, one progress bar each, with counts by state."""
    state = row["state"]
    reason = f" ({row['state_reason']})" if row.get("state_reason") else ""
    title = (
        f"campaign {row['id']} {row.get('name') or ''} → {row['release']}: "
        f"[{_STYLE.get(state, 'white')}]{state}[/]{reason}"
    )
    table = Table(title=title)
    for column in ("wave", "size", "state", "progress", "done", "counts"):
        table.add_column(column)
    for wave in row.get("waves", []):
        counts = wave.get("counts") or {}
        done, total = _progress(counts, wave["size"])
        table.add_row(
            str(wave["index"]), str(wave["size"]), wave["state"], _bar(counts, wave["size"]),
            f"{done}/{total}", _counts(counts),
        )  # fmt: skip
    return table


def _line(row: dict[str, Any]) -> str:
    """One plain line of the campaign's progress, for a non-tty ``watch``."""
    waves = " | ".join(
        f"w{w['index']} {w['state']} {_progress(w.get('counts') or {}, w['size'])[0]}/{w['size']}"
        for w in row.get("waves", [])
    )
    reason = f" ({row['state_reason']})" if row.get("state_reason") else ""
    return f"campaign {row['id']} {row['state']}{reason}: {waves}; {_counts(row['counts'])}"


def register(cli: click.Group) -> None:
    """Add the ``rollouts`` group to ``cli``."""

    @cli.group()
    def rollouts() -> None:
        """Update campaigns: install a release on outlets in waves."""

    @rollouts.command("create")
    @click.option("--release", required=True, help="The release version to install.")
    @click.option("--region", "regions", multiple=True, help="Region code prefix (repeatable).")
    @click.option("--kind", "kinds", multiple=True, help="Outlet kind (repeatable).")
    @click.option("--tag", "tags", multiple=True, help="Outlet tag (repeatable).")
    @click.option("--version", "versions", multiple=True, help="Only outlets running this.")
    @click.option("--outlet", "outlets", multiple=True, help="One outlet id (repeatable).")
    @click.option(
        "--outlets-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Outlet ids, one per line.",
    )
    @click.option("--waves", default=DEFAULT_WAVES, show_default=True, help="Wave sizes.")
    @click.option("--success-threshold", type=click.FloatRange(0, 1), help="Default 0.9.")
    @click.option("--failure-threshold", type=click.FloatRange(0, 1), help="Default 0.1.")
    @click.option("--concurrency", type=click.IntRange(1), help="Installs at once (50).")
    @click.option("--jitter", type=click.IntRange(0), help="Spread downloads over s (300).")
    @click.option("--wave-wait", type=click.IntRange(0), help="Seconds between waves (0).")
    @click.option("--health-timeout", type=click.IntRange(10), help="Seconds to prove (120).")
    @click.option("--name", default=None, help="A name operators recognise.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.pass_obj
    def rollouts_create(api: Any, /, **opts: Any) -> None:
        """Start a campaign installing --release on the target outlets."""
        outlets = list(opts["outlets"])
        if opts["outlets_file"] is not None:
            outlets += _outlets_file(opts["outlets_file"])
        body: dict[str, Any] = {
            "release": opts["release"],
            "target": {
                "regions": list(opts["regions"]),
                "kinds": list(opts["kinds"]),
                "tags": list(opts["tags"]),
                "versions": list(opts["versions"]),
                "outlets": outlets,
            },
            "waves": parse_waves(opts["waves"]),
        }
        optional = {
            "name": "name", "success_threshold": "success_threshold",
            "failure_threshold": "failure_threshold", "concurrency": "concurrency",
            "jitter_s": "jitter", "wave_wait_s": "wave_wait", "health_timeout_s": "health_timeout",
        }  # fmt: skip
        body |= {key: opts[opt] for key, opt in optional.items() if opts[opt] is not None}
        row = _call(api, "POST", "/api/v1/campaigns", body)
        if opts["as_json"]:
            click.echo(json.dumps(row, ensure_ascii=False, indent=2))
            return
        sizes = ", ".join(str(w["size"]) for w in row.get("waves", []))
        click.echo(f"campaign {row['id']} started: release {row['release']}, waves {sizes}")

    @rollouts.command("list")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.pass_obj
    def rollouts_list(api: Any, *, as_json: bool) -> None:
        """Every campaign with its state and progress."""
        rows = _call(api, "GET", "/api/v1/campaigns")  # a JSON list, newest first
        if as_json:
            click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        table = Table(title=f"{len(rows)} campaigns")
        for column in ("id", "name", "release", "state", "progress", "created", "by"):
            table.add_column(column)
        for row in rows:
            done, total = _progress(row.get("counts") or {})
            style = _STYLE.get(row["state"], "white")
            table.add_row(
                str(row["id"]), row.get("name") or "", row["release"],
                f"[{style}]{row['state']}[/]", f"{done}/{total}", when(row["created_at"]),
                row.get("created_by") or "",
            )  # fmt: skip
        Console(width=200).print(table)

    @rollouts.command("show")
    @click.argument("campaign_id", type=int)
    @click.option("--state", default=None, help="List the outlets in this state.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.pass_obj
    def rollouts_show(api: Any, campaign_id: int, state: str | None, *, as_json: bool) -> None:
        """One campaign: its waves and counts (and outlets in --state)."""
        row = _call(api, "GET", f"/api/v1/campaigns/{campaign_id}")
        outlets = None
        if state is not None:
            path = f"/api/v1/campaigns/{campaign_id}/outlets"
            outlets = _call(api, "GET", path, state=state, limit=500)
        if as_json:
            click.echo(json.dumps(row | ({"outlets": outlets} if outlets else {}), indent=2))
            return
        console = Console(width=200)
        console.print(campaign_table(row))
        if outlets is not None:
            table = Table(title=f"{outlets['total']} outlets {state}")
            for column in ("outlet", "wave", "since", "reason", "from"):
                table.add_column(column)
            for o in outlets["outlets"]:
                table.add_row(
                    o["outlet_id"], str(o["wave"]), when(o["since"]), o.get("reason") or "",
                    o.get("from_version") or "",
                )  # fmt: skip
            console.print(table)

    def _steer(api: Any, campaign_id: int, action: str, body: dict[str, Any]) -> None:
        row = _call(api, "POST", f"/api/v1/campaigns/{campaign_id}/{action}", body)
        reason = f" ({row['state_reason']})" if row.get("state_reason") else ""
        click.echo(f"campaign {row['id']} {row['state']}{reason}")

    @rollouts.command("pause")
    @click.argument("campaign_id", type=int)
    @click.option("--reason", default=None, help="Why (kept with the campaign).")
    @click.pass_obj
    def rollouts_pause(api: Any, campaign_id: int, reason: str | None) -> None:
        """Pause a running campaign: no new install starts."""
        _steer(api, campaign_id, "pause", {"reason": reason} if reason else {})

    @rollouts.command("resume")
    @click.argument("campaign_id", type=int)
    @click.option("--release", default=None, help="Continue with this (fixed) release.")
    @click.pass_obj
    def rollouts_resume(api: Any, campaign_id: int, release: str | None) -> None:
        """Resume a paused campaign, optionally with a fixed release."""
        _steer(api, campaign_id, "resume", {"release": release} if release else {})

    @rollouts.command("abort")
    @click.argument("campaign_id", type=int)
    @click.option("--reason", default=None, help="Why (kept with the campaign).")
    @click.pass_obj
    def rollouts_abort(api: Any, campaign_id: int, reason: str | None) -> None:
        """Abort a campaign: outlets not yet begun are not installed."""
        _steer(api, campaign_id, "abort", {"reason": reason} if reason else {})

    @rollouts.command("watch")
    @click.argument("campaign_id", type=int)
    @click.option("--interval", default=2.0, show_default=True, help="Seconds between reads.")
    @click.pass_obj
    def rollouts_watch(api: Any, campaign_id: int, interval: float) -> None:
        """Follow a campaign live until it completes or is aborted (Ctrl-C stops)."""
        path = f"/api/v1/campaigns/{campaign_id}"
        try:
            if sys.stdout.isatty():
                row = _call(api, "GET", path)
                with Live(campaign_table(row), refresh_per_second=4) as live:
                    while row["state"] not in _ENDED:
                        time.sleep(interval)
                        row = _call(api, "GET", path)
                        live.update(campaign_table(row))
                return
            last = ""
            while True:  # not a terminal: a line whenever something changed
                row = _call(api, "GET", path)
                line = _line(row)
                if line != last:
                    click.echo(line)
                    last = line
                if row["state"] in _ENDED:
                    return
                time.sleep(interval)
        except KeyboardInterrupt:
            click.echo("stopped watching; the campaign goes on", err=True)
