"""A power cut (the supervisor and its agent SIGKILLed together) at each step of a trial,
and the disk states a cut between two writes leaves: after the next start there is
always one working agent on a consistent ``current``/``good``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_agent.updates.layout import linked_version, read_health, write_trial
from govedge_testbed import Mosquitto
from govedge_wire import Birth
from tests.agent.conftest import MakeObserver
from tests.agent.harness import Observer, poll
from tests.supervisor.conftest import GOOD_NEW, NEVER_CONNECTS, OLD, StartSupervisor
from tests.supervisor.harness import SupervisorProcess, begin_trial, trial_of


def assert_consistent(home: Path, running: str) -> None:
    """``current`` runs ``running``; ``good`` is installed; the trial's verdict holds."""
    assert linked_version(home, "current") == running
    assert linked_version(home, "good") is not None
    trial = trial_of(home)
    if trial.outcome == "healthy":
        assert linked_version(home, "good") == trial.version
    if trial.outcome in {"rolled_back", "abandoned"}:
        assert running != trial.version


def online(observer: Observer, version: str, supervisor: SupervisorProcess) -> None:
    """A birth of ``version`` from this supervisor's one agent."""
    observer.wait_for(Birth, lambda b: b.agent_version == version, timeout=60)
    poll(lambda: len(supervisor.agent_pids()) == 1, timeout=5, what="one agent")


def test_cut_twice_during_the_health_wait_rolls_back(
    home: Path, broker: Mosquitto, observe: MakeObserver, start_supervisor: StartSupervisor
) -> None:
    observer = observe(broker)
    begin_trial(home, NEVER_CONNECTS, timeout_s=120)
    first = start_supervisor(broker)
    poll(lambda: len(first.agent_pids()) == 1, timeout=60, what="the trial's agent")
    assert trial_of(home).starts == 1
    first.power_cut()
    assert_consistent(home, NEVER_CONNECTS)  # still on trial: pending, current switched

    second = start_supervisor(broker)
    poll(lambda: len(second.agent_pids()) == 1, timeout=60, what="the trial's agent again")
    assert trial_of(home).starts == 2
    assert "trial of 1.3.0 was interrupted; trying again with a fresh deadline" in second.log()
    second.power_cut()

    third = start_supervisor(broker)
    online(observer, OLD, third)
    trial = trial_of(home)
    assert (trial.outcome, trial.reason, trial.detail) == (
        "rolled_back",
        "not_healthy",
        "interrupted twice",
    )
    assert_consistent(home, OLD)


def test_cut_after_the_switch_before_health_tries_again(
    home: Path, broker: Mosquitto, observe: MakeObserver, start_supervisor: StartSupervisor
) -> None:
    observer = observe(broker)
    begin_trial(home, GOOD_NEW, timeout_s=30)
    first = start_supervisor(broker)
    poll(lambda: trial_of(home).starts == 1, timeout=60, what="the trial counted")
    first.power_cut()
    assert linked_version(home, "current") == GOOD_NEW

    second = start_supervisor(broker)
    online(observer, GOOD_NEW, second)
    poll(lambda: trial_of(home).outcome == "healthy", timeout=60, what="a healthy trial")
    poll(lambda: linked_version(home, "good") == GOOD_NEW, timeout=5, what="good switched")
    assert_consistent(home, GOOD_NEW)


def test_cut_right_after_the_health_proof(
    home: Path, broker: Mosquitto, observe: MakeObserver, start_supervisor: StartSupervisor
) -> None:
    observer = observe(broker)
    begin_trial(home, GOOD_NEW, timeout_s=30)
    first = start_supervisor(broker)
    poll(lambda: read_health(home) is not None, timeout=60, what="health.json")
    first.power_cut()

    second = start_supervisor(broker)
    poll(lambda: trial_of(home).outcome == "healthy", timeout=60, what="a healthy trial")
    poll(lambda: linked_version(home, "good") == GOOD_NEW, timeout=5, what="good switched")
    online(observer, GOOD_NEW, second)
    assert_consistent(home, GOOD_NEW)


def test_a_stale_health_proof_of_a_dead_agent_does_not_count(
    home: Path, broker: Mosquitto, observe: MakeObserver, start_supervisor: StartSupervisor
) -> None:
    observe(broker)
    begin_trial(home, NEVER_CONNECTS, timeout_s=2, starts=1)
    # the version wrote its proof, then the power went: that pid is gone now
    from edge_agent.updates.layout import write_health

    write_health(home, NEVER_CONNECTS, 2**22 + os.getpid())
    supervisor = start_supervisor(broker)
    poll(lambda: trial_of(home).outcome != "pending", timeout=60, what="a verdict")
    assert trial_of(home).reason == "not_healthy"
    poll(lambda: len(supervisor.agent_pids()) == 1, timeout=10, what="the old agent")
    assert_consistent(home, OLD)


def test_cut_between_the_healthy_verdict_and_the_good_switch(
    home: Path, broker: Mosquitto, observe: MakeObserver, start_supervisor: StartSupervisor
) -> None:
    observer = observe(broker)
    begin_trial(home, GOOD_NEW, timeout_s=30)
    write_trial(home, trial_of(home).with_(outcome="healthy", starts=1))
    supervisor = start_supervisor(broker)
    online(observer, GOOD_NEW, supervisor)
    assert linked_version(home, "good") == GOOD_NEW
    assert_consistent(home, GOOD_NEW)


def test_cut_between_the_rollback_verdict_and_the_current_switch(
    home: Path, broker: Mosquitto, observe: MakeObserver, start_supervisor: StartSupervisor
) -> None:
    observer = observe(broker)
    begin_trial(home, NEVER_CONNECTS, timeout_s=30)
    write_trial(home, trial_of(home).with_(outcome="rolled_back", reason="not_healthy"))
    supervisor = start_supervisor(broker)
    online(observer, OLD, supervisor)
    assert "finished the rollback of 1.3.0 -> 1.0.0" in supervisor.log()
    assert_consistent(home, OLD)


def test_cut_before_the_installer_switched_abandons_the_trial(
    home: Path, broker: Mosquitto, observe: MakeObserver, start_supervisor: StartSupervisor
) -> None:
    observer = observe(broker)
    begin_trial(home, GOOD_NEW, timeout_s=30)
    write_trial(home, trial_of(home))  # the trial is written ...
    os.replace(home / "good", home / ".good.copy")  # ... but current never switched:
    os.symlink(Path("versions") / OLD, home / "good")
    os.replace(home / "good", home / "current")
    os.replace(home / ".good.copy", home / "good")
    supervisor = start_supervisor(broker)
    online(observer, OLD, supervisor)
    trial = trial_of(home)
    assert (trial.outcome, trial.reason) == ("abandoned", "install_failed")
    assert_consistent(home, OLD)


def test_an_unreadable_trial_changes_nothing_and_current_runs(
    home: Path, broker: Mosquitto, observe: MakeObserver, start_supervisor: StartSupervisor
) -> None:
    observer = observe(broker)
    trial_file = home / "update" / "trial.json"
    trial_file.parent.mkdir(parents=True)
    trial_file.write_text('{"version": "1.1.0", "health_timeout_s": -1}')
    supervisor = start_supervisor(broker)
    online(observer, OLD, supervisor)
    assert "trial.json unreadable" in supervisor.log()
    assert trial_file.read_text() == '{"version": "1.1.0", "health_timeout_s": -1}'
    assert linked_version(home, "current") == OLD
    assert linked_version(home, "good") == OLD


@pytest.mark.parametrize("damage", ["dangling", "missing"])
def test_a_broken_current_is_repaired_from_good(
    damage: str,
    home: Path,
    broker: Mosquitto,
    observe: MakeObserver,
    start_supervisor: StartSupervisor,
) -> None:
    observer = observe(broker)
    (home / "current").unlink()
    if damage == "dangling":
        os.symlink(Path("versions") / "9.9.9", home / "current")
    supervisor = start_supervisor(broker)
    online(observer, OLD, supervisor)
    assert linked_version(home, "current") == OLD
    assert "current was missing or broken; repaired to good 1.0.0" in supervisor.log()
