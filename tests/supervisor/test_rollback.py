"""The supervisor judges a switched version by itself: healthy becomes good, a crash or
silence is rolled back, and the old version runs again (real agents, real broker)."""

from __future__ import annotations

from pathlib import Path

from edge_agent.updates.layout import linked_version, read_health
from govedge_testbed import Mosquitto
from govedge_wire import Birth
from tests.agent.conftest import MakeObserver
from tests.agent.harness import poll
from tests.supervisor.conftest import CRASHES, GOOD_NEW, NEVER_CONNECTS, OLD, StartSupervisor
from tests.supervisor.harness import begin_trial, environ_of, trial_of


def test_a_new_version_that_proves_healthy_becomes_good(
    home: Path, broker: Mosquitto, observe: MakeObserver, start_supervisor: StartSupervisor
) -> None:
    observer = observe(broker)
    begin_trial(home, GOOD_NEW, timeout_s=30)
    supervisor = start_supervisor(broker)
    observer.wait_for(Birth, lambda b: b.agent_version == GOOD_NEW, timeout=60)
    poll(lambda: trial_of(home).outcome == "healthy", timeout=10, what="a healthy trial")
    poll(lambda: linked_version(home, "good") == GOOD_NEW, timeout=5, what="good switched")
    assert linked_version(home, "current") == GOOD_NEW
    assert trial_of(home).starts == 1
    health = read_health(home)
    assert health is not None
    assert health.pid in supervisor.agent_pids()
    # The unit's allocator setting reaches the agent also from a supervisor started by
    # hand (this one's environment has none).
    assert "MALLOC_ARENA_MAX=2" in environ_of(health.pid)
    # The supervisor logs the verdict just after it switches the link: wait for the line.
    poll(
        lambda: "trial of 1.1.0 healthy; good now 1.1.0" in supervisor.log(),
        timeout=5,
        what="the verdict in the supervisor's log",
    )
    assert supervisor.stop() == 0  # SIGTERM reaches the agent; both exit cleanly


def test_a_version_that_crashes_on_start_is_rolled_back(
    home: Path, broker: Mosquitto, observe: MakeObserver, start_supervisor: StartSupervisor
) -> None:
    observer = observe(broker)
    begin_trial(home, CRASHES, timeout_s=30)
    supervisor = start_supervisor(broker)
    observer.wait_for(Birth, lambda b: b.agent_version == OLD, timeout=60)
    trial = trial_of(home)
    assert (trial.outcome, trial.reason) == ("rolled_back", "crashed_on_start")
    assert trial.detail == "exited with code 1 before healthy"
    assert linked_version(home, "current") == OLD
    assert linked_version(home, "good") == OLD
    assert not observer.messages(Birth)[:-1]  # the crashed version never came online
    assert "rolled back 1.2.0 -> 1.0.0: crashed_on_start" in supervisor.log()


def test_a_version_that_never_connects_is_rolled_back_after_the_timeout(
    home: Path, broker: Mosquitto, observe: MakeObserver, start_supervisor: StartSupervisor
) -> None:
    observer = observe(broker)
    begin_trial(home, NEVER_CONNECTS, timeout_s=2)
    supervisor = start_supervisor(broker)
    observer.wait_for(Birth, lambda b: b.agent_version == OLD, timeout=60)
    trial = trial_of(home)
    assert (trial.outcome, trial.reason) == ("rolled_back", "not_healthy")
    assert linked_version(home, "current") == OLD
    assert linked_version(home, "good") == OLD
    assert [b.agent_version for b in observer.messages(Birth)] == [OLD]
    assert "no health proof in 2 s; stopping it" in supervisor.log()
    assert len(supervisor.agent_pids()) == 1  # the silent one was stopped, not left behind
