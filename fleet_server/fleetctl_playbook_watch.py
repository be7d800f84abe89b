"""``fleetctl playbooks run --watch``: a progress bar per outlet while a run goes on.

The job events (polled from ``/api/v1/playbook-runs/{id}/events``) are printed as a log
above the bars; each poll that brought events reads the run again for the per-host
counts, since an event does not say whether a task changed anything. A bar's length is
the tasks started so far (a playbook's task count is not known before it runs), its
progress the results that outlet has reported; when the run ends every bar shows the
outlet's final result. On a terminal the bars redraw in place; into a file or pipe only
their final state is printed.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

DONE = frozenset({"successful", "failed", "canceled", "error", "interrupted"})
_HOST_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}
_COUNTS = ("ok", "changed", "failed", "unreachable", "skipped")
_STYLE = {"changed": "yellow", "ok": "green", "failed": "red", "unreachable": "red"}


def result_text(host: dict[str, Any]) -> str:
    """``changed  ok=3 changed=1 failed=0 unreachable=0 skipped=1``: state, then counts."""
    counts = " ".join(f"{name}={host[name]}" for name in _COUNTS)
    return f"{host['status']:<11} {counts}"


class HostBars:
    """One progress bar per outlet that runs (held ones are not run: no bar)."""

    def __init__(self, progress: Progress, hosts: list[dict[str, Any]]) -> None:
        self._progress = progress
        self._tasks_started = 0
        self._bars: dict[str, TaskID] = {
            host["outlet_id"]: progress.add_task(
                host["outlet_id"], total=None, result=result_text(host), style="white"
            )
            for host in hosts
            if host["status"] != "held"
        }

    def task_started(self) -> None:
        """A new task began: every bar grows by one step."""
        self._tasks_started += 1
        for bar in self._bars.values():
            self._progress.update(bar, total=self._tasks_started)

    def show(self, run: dict[str, Any]) -> None:
        """The run's per-host results; on a finished run, each bar full with its result."""
        finished = run["status"] in DONE
        for host in run["hosts"]:
            bar = self._bars.get(host["outlet_id"])
            if bar is None:
                continue
            reported = sum(host[name] for name in ("ok", "failed", "unreachable", "skipped"))
            total = max(self._tasks_started, reported, 1)
            self._progress.update(
                bar, total=total, completed=total if finished else min(reported, total),
                result=result_text(host), style=_STYLE.get(host["status"], "white"),
            )  # fmt: skip


def watch(api: Any, run_id: int, run: dict[str, Any], *, console: Console,
          poll_s: float = 1.0) -> dict[str, Any]:  # fmt: skip
    """Follow run ``run`` (as the start answered it) until it ends; the finished run."""
    progress = Progress(
        TextColumn("{task.description:<24}", markup=False),
        BarColumn(bar_width=30),
        TextColumn("[{task.fields[style]}]{task.fields[result]}"),
        console=console,
        # The last state stays on screen: it is the run's result.
        transient=False,
    )
    after = 0
    with progress:
        bars = HostBars(progress, run["hosts"])
        while True:
            page = api.get(f"/api/v1/playbook-runs/{run_id}/events?after={after}")
            for event in page["events"]:
                after = event["seq"]
                kind = _HOST_EVENTS.get(event["event"])
                if kind is not None:
                    line = f"{event['outlet_id']:<24} {kind:<12} {event['task'] or ''}"
                    progress.console.print(line, markup=False, highlight=False)
                elif event["event"] == "playbook_on_task_start":
                    bars.task_started()
                    progress.console.print(f"-- {event['task']}", markup=False, highlight=False)
            if page["events"] or page["status"] in DONE:
                run = api.get(f"/api/v1/playbook-runs/{run_id}")
                bars.show(run)
            if page["status"] in DONE and not page["events"]:
                return run
            if not page["events"]:
                time.sleep(poll_s)
