"""Releases built once per session, and an install home with 1.0.0 good and running."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_agent.updates.layout import switch_link
from govedge_testbed import Mosquitto
from govedge_testbed.releases import build_release, install_version
from tests.agent.conftest import observe
from tests.conftest import missing
from tests.supervisor.harness import SupervisorProcess

OLD = "1.0.0"
GOOD_NEW = "1.1.0"
CRASHES = "1.2.0"
NEVER_CONNECTS = "1.3.0"
__all__ = ["observe"]  # the agent tests' observer fixture, shared
StartSupervisor = Callable[[Mosquitto], SupervisorProcess]


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("releases")
    try:
        return {
            OLD: build_release(out, OLD),
            GOOD_NEW: build_release(out, GOOD_NEW),
            CRASHES: build_release(out, CRASHES, "crash_on_start"),
            NEVER_CONNECTS: build_release(out, NEVER_CONNECTS, "never_connects"),
        }
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        missing(f"cannot build test releases offline (run scripts/bootstrap): {exc}")


@pytest.fixture
def home(tmp_path: Path, wheels: dict[str, Path]) -> Path:
    """GOVEDGE_HOME with every release installed; ``good`` and ``current`` on 1.0.0."""
    root = tmp_path / "govedge"
    root.mkdir()
    for version, wheel in wheels.items():
        install_version(root, wheel, version)
    switch_link(root, "good", OLD)
    switch_link(root, "current", OLD)
    return root


@pytest.fixture
def start_supervisor(home: Path, tmp_path: Path, outlet_id: str) -> Iterator[StartSupervisor]:
    started: list[SupervisorProcess] = []

    def start(broker: Mosquitto) -> SupervisorProcess:
        supervisor = SupervisorProcess(
            home=home,
            broker=broker,
            outlet_id=outlet_id,
            data_dir=tmp_path / "agent-data",
            log_path=tmp_path / f"supervisor-{len(started)}.log",
        )
        started.append(supervisor)
        return supervisor

    yield start
    for supervisor in started:
        supervisor.close()
