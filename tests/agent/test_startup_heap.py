"""The agent's start-up objects leave the cyclic collector's sight once it runs (issue 17).

An idle agent's full collections walked every object of its start-up (~100,000) and
were most of its idle CPU; ``edge_agent.startup_heap`` freezes them once the local API
listens. Checked here: what a freeze keeps and what it still collects, and that a real
agent does it once started and still serves and stops cleanly.
"""

from __future__ import annotations

import gc
import re
import signal
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.startup_heap import freeze_startup_heap
from govedge_testbed import Mosquitto
from govedge_wire import Birth
from tests.agent.conftest import MakeObserver
from tests.agent.harness import AgentProcess, poll


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """The test process's own collector as it was: unfrozen again afterwards."""
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
def test_a_freeze_keeps_live_objects_out_of_collections_and_collects_garbage_first() -> None:
    kept = _Node()
    garbage = _Node()
    garbage.other = _Node()
    garbage.other.other = garbage  # a cycle only the collector can free
    gone = weakref.ref(garbage)
    del garbage

    frozen = freeze_startup_heap()

    assert gone() is None  # collected before the freeze, not kept forever
    assert frozen == gc.get_freeze_count() > 0
    tracked = {id(obj) for obj in gc.get_objects()}
    assert id(kept) not in tracked  # the collector no longer walks it
    later = _Node()
    assert id(later) in {id(obj) for obj in gc.get_objects()}  # new objects as before


def test_a_running_agent_freezes_its_start_up_heap_once_and_still_stops_cleanly(
    broker: Mosquitto, outlet_id: str, tmp_path: Path, observe: MakeObserver
) -> None:
    observer = observe(broker)
    agent = AgentProcess(
        mqtt_url=broker.url,
        outlet_id=outlet_id,
        data_dir=tmp_path / "data",
        log_path=tmp_path / "agent.log",
        extra_env={"GOVEDGE_LOG_LEVEL": "DEBUG"},
    )
    try:
        observer.wait_for(Birth, timeout=30)
        poll(lambda: "start-up heap settled" in agent.log(), timeout=60, what="heap frozen")
        settled = re.findall(r"start-up heap settled: (\d+) objects", agent.log())
        assert len(settled) == 1
        # Modules, models and routes of the whole agent: far more than a handful.
        assert int(settled[0]) > 10_000
        agent.signal(signal.SIGTERM)
        assert agent.wait(30) == 0
    finally:
        agent.close()
