"""What the supervisor decides from the disk alone, before each start of the agent.

Every decision is one log line with versions and reasons only. The order of writes is
chosen so that a power cut between two of them is finished here at the next start:
a final outcome is written first, then the link it implies is switched, so a
``rolled_back`` trial with ``current`` still on its version is switched back again,
and a ``healthy`` trial whose version is not yet ``good`` is made ``good``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edge_agent.updates.layout import (
    BadStateFile,
    Trial,
    linked_version,
    read_trial,
    switch_link,
    venv_agent,
    write_trial,
)

log = logging.getLogger(__name__)

# A trial started this many times without a verdict (the machine lost power during
# each) is not tried again.
MAX_TRIAL_STARTS = 2


def rollback_target(home: Path, trial: Trial) -> str | None:
    """The version to go back to: ``good``, else the trial's ``previous``."""
    good = linked_version(home, "good")
    if good is not None and good != trial.version:
        return good
    previous = trial.previous
    if previous and previous != trial.version and venv_agent(home, previous).exists():
        return previous
    return None


def roll_back(home: Path, trial: Trial, reason: str, detail: str) -> None:
    """Record the rollback, then switch ``current`` to the version before the trial."""
    target = rollback_target(home, trial)
    if target is None:
        log.error(
            "trial of %s failed (%s) but no older version is installed", trial.version, reason
        )
    write_trial(home, trial.with_(outcome="rolled_back", reason=reason, detail=detail))
    if target is not None:
        switch_link(home, "current", target)
        log.warning("rolled back %s -> %s: %s (%s)", trial.version, target, reason, detail)


def repair_current(home: Path) -> None:
    """A missing or dangling ``current`` points at ``good`` again."""
    if linked_version(home, "current") is not None:
        return
    good = linked_version(home, "good")
    if good is None:
        log.error("current and good are both missing or broken; nothing to run")
        return
    switch_link(home, "current", good)
    log.warning("current was missing or broken; repaired to good %s", good)


def _finish_final(home: Path, trial: Trial) -> None:
    """Switch the link a final outcome implies, if a power cut came before it."""
    current = linked_version(home, "current")
    if trial.outcome == "healthy" and current == trial.version:
        if linked_version(home, "good") != trial.version:
            switch_link(home, "good", trial.version)
            log.info("trial of %s was healthy; good now %s", trial.version, trial.version)
    elif trial.outcome == "rolled_back" and current == trial.version:
        target = rollback_target(home, trial)
        if target is not None:
            switch_link(home, "current", target)
            log.warning("finished the rollback of %s -> %s", trial.version, target)


def prepare(home: Path) -> Trial | None:
    """Bring the layout to a consistent state; the pending trial to run, if any."""
    repair_current(home)
    try:
        trial = read_trial(home)
    except BadStateFile as exc:
        log.error("%s; running current without a trial", exc)  # noqa: TRY400 - one line
        return None
    if trial is None:
        return None
    if trial.outcome != "pending":
        _finish_final(home, trial)
        return None
    current = linked_version(home, "current")
    if current != trial.version:
        write_trial(
            home,
            trial.with_(
                outcome="abandoned",
                reason="install_failed",
                detail="current was never switched to the new version",
            ),
        )
        log.warning("trial of %s abandoned (install_failed): current is %s", trial.version, current)
        return None
    if trial.starts >= MAX_TRIAL_STARTS:
        roll_back(home, trial, "not_healthy", "interrupted twice")
        return None
    if trial.starts > 0:
        log.warning(
            "trial of %s was interrupted; trying again with a fresh deadline", trial.version
        )
    return trial
