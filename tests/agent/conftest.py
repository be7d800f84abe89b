"""Fixtures for agent tests: start agents as subprocesses, observe their outlet."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from govedge_testbed import Mosquitto
from tests.agent.harness import AgentProcess, Observer

StartAgent = Callable[..., AgentProcess]
MakeObserver = Callable[[Mosquitto], Observer]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """The agent's data directory (not created: the agent must create it)."""
    return tmp_path / "agent-data"


@pytest.fixture
def start_agent(tmp_path: Path, outlet_id: str, data_dir: Path) -> Iterator[StartAgent]:
    """Start ``edge-agent run`` against a broker; every agent is killed at teardown."""
    agents: list[AgentProcess] = []

    def start(broker: Mosquitto, *, local_api_port: int = 0) -> AgentProcess:
        agent = AgentProcess(
            mqtt_url=broker.url,
            outlet_id=outlet_id,
            data_dir=data_dir,
            log_path=tmp_path / f"agent-{len(agents)}.log",
            local_api_port=local_api_port,
        )
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.close()


@pytest.fixture
def observe(outlet_id: str) -> Iterator[MakeObserver]:
    """Connect an observer to a broker, subscribed to the outlet's uplink."""
    observers: list[Observer] = []

    def make(broker: Mosquitto) -> Observer:
        observer = Observer(port=broker.port, outlet_id=outlet_id)
        observers.append(observer)
        return observer

    yield make
    for observer in observers:
        observer.close()
