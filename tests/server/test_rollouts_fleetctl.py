"""``fleetctl rollouts …`` against a real fleet server process (SQLite, real Mosquitto):
create, show, pause, a refused resume/abort with the server's reason, resume, abort,
and the refusals of an unknown release (409) and a target that selects nobody (422).
The outlets are simulated agents that never close (no maintenance window), so nothing
moves past ``scheduled``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from govedge_testbed import Mosquitto
from govedge_testbed.update_agents import UpdateAgents
from tests.server.helpers import FleetServer, run_fleetctl
from tests.server.releases.kit import wheel_bytes, wheel_name

OUTLETS = ["ro-fc-1", "ro-fc-2", "ro-fc-3"]


@pytest.fixture
def server(broker: Mosquitto, tmp_path: Path) -> Iterator[FleetServer]:
    fleet = FleetServer(
        mqtt_url=broker.url,
        database_url=f"sqlite:///{tmp_path / 'fleet.db'}",
        workdir=tmp_path,
        GOVEDGE_PKI_DIR=str(tmp_path / "pki"),
    )
    fleet.start()
    yield fleet
    assert fleet.stop() == 0, fleet.stderr()


_fleetctl = run_fleetctl


@pytest.fixture
def agents(broker: Mosquitto, server: FleetServer) -> Iterator[UpdateAgents]:
    profiles = [{"outlet_id": o, "region_code": "330106", "opening_hours": "24h"} for o in OUTLETS]
    server.http.put("/api/v1/outlet-profiles", json=profiles).raise_for_status()
    fleet = UpdateAgents("127.0.0.1", broker.port, OUTLETS)
    fleet.start(timeout=30)
    for outlet in OUTLETS:
        server.wait_state(outlet, "online")
    yield fleet
    fleet.stop()


def test_fleetctl_rollouts_steers_a_campaign_and_shows_refusals(
    server: FleetServer, agents: UpdateAgents
) -> None:
    upload = server.http.post(
        "/api/v1/releases",
        params={"version": "2.0.0", "file_name": wheel_name("2.0.0")},
        content=wheel_bytes("2.0.0"),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert upload.status_code == 201, upload.text

    missing = _fleetctl(server, "rollouts", "create", "--release", "9.9.9", "--region", "33",
                        code=1)  # fmt: skip
    assert missing.stderr.startswith("error: refused (409): release 9.9.9 does not exist")
    nobody = _fleetctl(server, "rollouts", "create", "--release", "2.0.0", "--region", "44",
                       code=1)  # fmt: skip
    assert nobody.stderr.startswith("error: invalid (422): the target matches no outlet")

    created = _fleetctl(server, "rollouts", "create", "--release", "2.0.0", "--region", "3301",
                        "--waves", "1,100%", "--name", "二号版本").stdout  # fmt: skip
    assert created.startswith("campaign ")
    assert "release 2.0.0, waves 1, 2" in created  # 1 outlet, then the other 2
    campaign_id = created.split()[1]

    listed_all = _fleetctl(server, "rollouts", "list").stdout
    assert "1 campaigns" in listed_all
    assert "二号版本" in listed_all
    assert "0/3" in listed_all  # nothing done of 3 outlets
    shown = _fleetctl(server, "rollouts", "show", campaign_id).stdout
    assert "二号版本" in shown
    assert "running" in shown
    listed = _fleetctl(server, "rollouts", "show", campaign_id, "--state", "pending").stdout
    # How many are still pending depends on how far the engine got (its first tick
    # waits for leadership): whatever the count says, each of them is listed.
    pending = re.search(r"(\d) outlets pending", listed)
    assert pending is not None, listed
    assert listed.count("ro-fc-") == int(pending.group(1)) <= 3

    refused = _fleetctl(server, "rollouts", "resume", campaign_id, code=1)
    assert refused.stderr.startswith(f"error: refused (409): campaign {campaign_id} is running")
    paused = _fleetctl(server, "rollouts", "pause", campaign_id, "--reason", "打印机投诉")
    assert paused.stdout.startswith(f"campaign {campaign_id} paused (打印机投诉)")
    assert "running" in _fleetctl(server, "rollouts", "resume", campaign_id).stdout
    aborted = _fleetctl(server, "rollouts", "abort", campaign_id, "--reason", "withdrawn")
    assert aborted.stdout.startswith(f"campaign {campaign_id} aborted")
    again = _fleetctl(server, "rollouts", "abort", campaign_id, code=1)
    assert again.stderr.startswith(f"error: refused (409): campaign {campaign_id} is aborted")
    watched = _fleetctl(server, "rollouts", "watch", campaign_id).stdout
    assert watched.startswith(f"campaign {campaign_id} aborted")
    unknown = _fleetctl(server, "rollouts", "show", "999", code=1)
    assert unknown.stderr.startswith("error: not found (404): campaign 999 does not exist")
    assert not any(log.offered for log in agents.snapshot().values())  # never in a window
