"""A trial at start, with a real agent process and the real broker; the test plays the
supervisor's part of the contract (it owns ``trial.json`` while the outcome is pending).
"""

from __future__ import annotations

import os
from pathlib import Path

from edge_agent.updates.layout import Layout, new_trial
from govedge_testbed import Mosquitto
from govedge_wire import UpdateStatus
from tests.agent.harness import AgentProcess, Observer, poll

RUNNING = "0.1.0"  # the version of this checkout, what the agent under test runs


def home_with_versions(home: Path, *versions: str) -> Layout:
    layout = Layout(home)
    for version in versions:
        (layout.version_dir(version) / "venv").mkdir(parents=True)
    return layout


def start(
    tmp_path: Path, broker: Mosquitto, outlet_id: str, home: Path, **env: str
) -> AgentProcess:
    return AgentProcess(
        mqtt_url=broker.url,
        outlet_id=outlet_id,
        data_dir=tmp_path / "data",
        log_path=tmp_path / "agent.log",
        extra_env={"GOVEDGE_SUPERVISED": "1", "GOVEDGE_INSTALL_HOME": str(home), **env},
    )


def cached(cache: Path, layout: Layout, version: str) -> Path:
    """Where a service's bytecode of ``version`` lives under its PYTHONPYCACHEPREFIX."""
    return cache / layout.version_dir(version).absolute().relative_to("/")


def test_the_new_version_proves_health_then_reports_healthy_and_prunes(
    tmp_path: Path, broker: Mosquitto, outlet_id: str
) -> None:
    home = tmp_path / "govedge"
    layout = home_with_versions(home, "0.0.8", "0.0.9", RUNNING)
    layout.switch("good", "0.0.9")
    trial = new_trial(version=RUNNING, previous="0.0.9", campaign_id=4, health_timeout_s=60)
    layout.write_trial(trial)
    layout.switch("current", RUNNING)
    # The unit's bytecode cache, as earlier runs of each version left it.
    cache = tmp_path / "bytecode"
    for version in ("0.0.8", "0.0.9", RUNNING):
        (cached(cache, layout, version) / "__pycache__").mkdir(parents=True)
    observer = Observer(port=broker.port, outlet_id=outlet_id)
    agent = start(tmp_path, broker, outlet_id, home, PYTHONPYCACHEPREFIX=str(cache))
    try:
        # Empty outbox: the proof is an acknowledged UpdateStatus, then health.json.
        poll(lambda: layout.read_health() is not None, timeout=30, what="health.json")
        health = layout.read_health()
        assert health is not None
        assert (health["version"], health["pid"]) == (RUNNING, agent.proc.pid)
        proving = observer.wait_for(UpdateStatus, timeout=10)
        assert (proving.state, proving.campaign_id) == ("restarting", 4)
        # The supervisor's part: outcome healthy, good moved.
        layout.write_trial({**trial, "starts": 1, "outcome": "healthy"})
        layout.switch("good", RUNNING)
        healthy = observer.wait_for(UpdateStatus, lambda m: m.state == "healthy", timeout=30)
        assert (healthy.version, healthy.running_version, healthy.campaign_id) == (
            RUNNING,
            RUNNING,
            4,
        )
        poll(lambda: not layout.trial_file.exists(), timeout=10, what="trial archived")
        # current/good and one previous are kept; older versions are removed.
        poll(lambda: layout.installed() == ["0.0.9", RUNNING], timeout=30, what="pruned")
        # The removed version's bytecode goes with it; the kept ones' stays.
        assert not cached(cache, layout, "0.0.8").exists()
        assert cached(cache, layout, "0.0.9").exists()
        assert cached(cache, layout, RUNNING).exists()
    finally:
        agent.close()
        observer.close()
    last = layout.last_history()
    assert last is not None
    assert (last["version"], last["outcome"]) == (RUNNING, "healthy")
    assert not layout.health_file.exists()


def test_the_old_version_reports_a_rollback_with_its_reason(
    tmp_path: Path, broker: Mosquitto, outlet_id: str
) -> None:
    home = tmp_path / "govedge"
    layout = home_with_versions(home, RUNNING, "9.1.0")
    layout.switch("good", RUNNING)
    layout.switch("current", RUNNING)
    trial = new_trial(version="9.1.0", previous=RUNNING, campaign_id=5, health_timeout_s=60)
    layout.write_trial(
        {**trial, "starts": 3, "outcome": "rolled_back", "reason": "crashed_on_start",
         "detail": "exit 1 three times"}
    )  # fmt: skip
    observer = Observer(port=broker.port, outlet_id=outlet_id)
    agent = start(tmp_path, broker, outlet_id, home)
    try:
        report = observer.wait_for(UpdateStatus, timeout=30)
        poll(lambda: not layout.trial_file.exists(), timeout=10, what="trial archived")
    finally:
        agent.close()
        observer.close()
    assert (report.state, report.reason, report.version, report.running_version) == (
        "rolled_back",
        "crashed_on_start",
        "9.1.0",
        RUNNING,
    )
    assert report.campaign_id == 5
    assert report.detail == "exit 1 three times"
    assert sorted(p.name for p in layout.history.iterdir()) == [f"{trial['created_at']}-9.1.0.json"]
    assert os.readlink(home / "current") == "versions/0.1.0"
