"""At start: prove the new version healthy during a trial, and report a finished trial.

While ``trial.json`` is ``pending`` the supervisor owns it; the new version only writes
``health.json`` once it proved healthy (connected, devices discovered, one outbox entry
acknowledged or, with an empty outbox, one ``UpdateStatus`` acknowledged), then waits
(bounded) for the supervisor to record ``healthy``. A final trial belongs to the agent
that finds it: it reports it (``healthy`` from the new version, ``rolled_back`` from the
old one, ``failed``/``install_failed`` for ``abandoned``) and moves it to ``history/``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from edge_agent.updates.installer import StatusReporter
from edge_agent.updates.layout import (
    FINAL_OUTCOMES,
    BadStateFile,
    Layout,
    normal_version,
    same_release,
    utc_now_iso,
    write_json_atomically,
)
from edge_agent.updates.layout import read_trial as read_checked_trial

log = logging.getLogger(__name__)

POLL_S: Final = 0.2


async def settle_trial(
    layout: Layout,
    *,
    running_version: str,
    supervised: bool,
    report: StatusReporter,
    prove_health: Callable[[int | None], Awaitable[None]],
) -> str | None:
    """Handle the trial found at start; the outcome reported, or None."""
    try:
        # The supervisor's reading of the contract: a trial it cannot read is left as
        # found for a person to look at, never reported or archived by the agent.
        read_checked_trial(layout.home)
    except BadStateFile as exc:
        log.error("%s; left in place", exc)  # noqa: TRY400 - one line, no trace
        return None
    trial = layout.read_trial()
    if trial is None:
        return None
    running = normal_version(running_version)
    if trial.get("outcome") == "pending":
        if not supervised or not _is(trial.get("version"), running):
            return None
        campaign = trial.get("campaign_id")
        await prove_health(campaign if isinstance(campaign, int) else None)
        write_json_atomically(
            layout.health_file, {"version": running, "pid": os.getpid(), "at": utc_now_iso()}
        )
        log.info("version %s proved healthy; waiting for the supervisor", running)
        trial = await _wait_final(layout, float(trial.get("health_timeout_s", 120)))
        if trial is None:
            return None
    outcome = str(trial.get("outcome"))
    await _report_final(trial, running, report)
    await asyncio.to_thread(layout.archive_trial, trial)
    if outcome == "healthy" and _is(trial.get("version"), running):
        await asyncio.to_thread(prune, layout, keep_previous=trial.get("previous"))
    return outcome


async def _wait_final(layout: Layout, timeout_s: float) -> dict[str, Any] | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        trial = layout.read_trial()
        if trial is not None and trial.get("outcome") in FINAL_OUTCOMES:
            return trial
        await asyncio.sleep(POLL_S)
    log.warning("the supervisor did not record the trial's outcome within %.0f s", timeout_s)
    return None


async def _report_final(trial: dict[str, Any], running: str, report: StatusReporter) -> None:
    outcome = trial.get("outcome")
    version = str(trial.get("version"))
    campaign = trial.get("campaign_id")
    campaign_id = campaign if isinstance(campaign, int) else None
    detail = trial.get("detail")
    detail = str(detail)[:500] if detail else None
    if outcome == "healthy":
        if _is(version, running):
            await report("healthy", version=version, campaign_id=campaign_id)
    elif outcome == "rolled_back":
        reason = str(trial.get("reason") or "crashed_on_start")
        await report(
            "rolled_back", version=version, campaign_id=campaign_id, reason=reason, detail=detail
        )
    elif outcome == "abandoned":
        await report(
            "failed", version=version, campaign_id=campaign_id, reason="install_failed",
            detail=detail,
        )  # fmt: skip


def _is(version: object, running: str) -> bool:
    try:
        return isinstance(version, str) and same_release(version, running)
    except ValueError:
        return False


def prune(layout: Layout, *, keep_previous: object) -> list[str]:
    """Remove versions but ``current``, ``good`` and one previous; the removed ones."""
    keep = {layout.link("current"), layout.link("good")}
    if isinstance(keep_previous, str):
        keep.add(keep_previous)
    removed = []
    for version in layout.installed():
        if version not in keep:
            # Bytecode first: a crash between the two leaves the version listed,
            # so the next prune removes both; the other order would orphan it.
            if sys.pycache_prefix:  # the service's bytecode cache (service/unit.py)
                cached = (layout.versions / version).absolute().relative_to("/")
                shutil.rmtree(Path(sys.pycache_prefix, cached), ignore_errors=True)
            shutil.rmtree(layout.versions / version, ignore_errors=True)
            removed.append(version)
    downloads = layout.update / "downloads"
    if downloads.is_dir():
        for folder in downloads.iterdir():
            if folder.name not in keep:
                shutil.rmtree(folder, ignore_errors=True)
    return removed
