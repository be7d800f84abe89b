"""The campaigns pages in a real headless Chromium against a real server and campaign
API, authentication on: the list shows a campaign with its state and progress; its page
shows the waves and outlets, follows a change made elsewhere without a reload, pauses
on a click, says why a resume with an unknown release is refused; a viewer sees no
buttons. The outlets are simulated agents that never close (no maintenance window), so
the campaign stays where the test puts it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from govedge_testbed import Mosquitto
from govedge_testbed.update_agents import UpdateAgents
from tests.health.test_config_ui import JS_ERRORS, _logged_in
from tests.server.helpers import FleetServer
from tests.server.releases.kit import wheel_bytes, wheel_name

OUTLETS = ["cp-ui-1", "cp-ui-2", "cp-ui-3"]


@pytest.fixture
def fleet(broker: Mosquitto, tmp_path: Path) -> Iterator[FleetServer]:
    server = FleetServer(
        mqtt_url=broker.url, database_url=f"sqlite:///{tmp_path / 'f.db'}", workdir=tmp_path,
        GOVEDGE_PKI_DIR=str(tmp_path / "pki"),
    )  # fmt: skip
    server.start()
    JS_ERRORS.clear()
    profiles = [{"outlet_id": o, "region_code": "330106", "opening_hours": "24h"} for o in OUTLETS]
    server.http.put("/api/v1/outlet-profiles", json=profiles).raise_for_status()
    upload = server.http.post(
        "/api/v1/releases",
        params={"version": "2.0.0", "file_name": wheel_name("2.0.0")},
        content=wheel_bytes("2.0.0"),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert upload.status_code == 201, upload.text
    agents = UpdateAgents("127.0.0.1", broker.port, OUTLETS)
    agents.start(timeout=30)
    try:
        for outlet in OUTLETS:
            server.wait_state(outlet, "online")
        yield server
        assert JS_ERRORS == []
    finally:
        agents.stop()
        assert server.stop() == 0, server.stderr()


def _token(fleet: FleetServer, name: str, role: str) -> str:
    """An API token for a new user of ``role`` (a script's way in, beside the browser)."""
    answer = fleet.http.post("/api/v1/users", json={"name": name, "role": role})
    answer.raise_for_status()
    token: str = answer.json()["token"]
    return token


def _campaign(fleet: FleetServer) -> int:
    body = {"name": "春季修复", "release": "2.0.0", "target": {"regions": ["3301"]},
            "waves": [1, "100%"]}  # fmt: skip
    created = fleet.http.post("/api/v1/campaigns", json=body)
    assert created.status_code == 201, created.text
    campaign_id: int = created.json()["id"]
    return campaign_id


def test_operator_follows_pauses_and_is_told_why_a_resume_is_refused(
    fleet: FleetServer, browser: Any
) -> None:
    campaign_id = _campaign(fleet)
    alice = _logged_in(browser, fleet, "alice", "operator")
    alice.goto(f"{fleet.url}/ui/campaigns")
    assert alice.locator("header nav a.on").inner_text() == "升级任务"
    row = alice.locator(f'tr[data-campaign="{campaign_id}"]')
    row.wait_for()
    assert "春季修复" in row.inner_text()
    assert row.locator("[data-campaign-state]").inner_text() == "进行中"
    assert "0/3" in row.inner_text()

    alice.click(f'tr[data-campaign="{campaign_id}"] a')
    alice.wait_for_selector("#wave-table")
    assert alice.locator("#wave-table tr[data-wave]").count() == 2
    alice.wait_for_selector("#outlet-table")
    assert alice.locator("#outlet-table tr[data-outlet]").count() == 3
    alice.select_option("#state-filter", "pending")
    alice.wait_for_function(
        "document.querySelectorAll('#outlet-table tr[data-outlet]').length == 2"
    )

    # Paused by someone else: the page shows it without a reload.
    other = {"Authorization": f"Bearer {_token(fleet, 'bob', 'operator')}"}
    paused = fleet.http.post(f"/api/v1/campaigns/{campaign_id}/pause",
                             json={"reason": "打印机投诉"}, headers=other)  # fmt: skip
    assert paused.status_code == 200, paused.text
    alice.wait_for_selector('#campaign-head [data-campaign-state="paused"]')
    assert alice.locator("#state-reason").inner_text() == "打印机投诉"

    alice.fill("#cp-release", "9.9.9")
    alice.click("#btn-resume")
    refused = alice.wait_for_selector("#cp-refused")
    assert refused is not None
    assert "9.9.9" in refused.inner_text()
    assert "409" in refused.inner_text()

    alice.click("#btn-abort")
    alice.wait_for_selector("#cp-done")
    alice.wait_for_selector('#campaign-head [data-campaign-state="aborted"]')
    assert alice.locator("#btn-pause, #btn-resume, #btn-abort").count() == 0


def test_a_viewer_sees_the_campaign_without_buttons(fleet: FleetServer, browser: Any) -> None:
    campaign_id = _campaign(fleet)
    carol = _logged_in(browser, fleet, "carol", "viewer")
    carol.goto(f"{fleet.url}/ui/campaigns/{campaign_id}?lang=en")
    carol.wait_for_selector("#wave-table")
    assert carol.locator("#read-only").inner_text().startswith("Read-only")
    assert carol.locator("#btn-pause, #btn-resume, #btn-abort").count() == 0
    assert carol.locator('#campaign-head [data-campaign-state="running"]').inner_text() == "running"
