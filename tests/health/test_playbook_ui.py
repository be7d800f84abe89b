"""The playbook runs pages in a real headless Chromium against a real server running
real Ansible (outlets reached with ``ansible_connection=local``), authentication on: a
technician starts a run from the form and watches each outlet's row reach its result
without a reload, with the open outlet held back and why; the list and the outlet's
page show the run; a refused start says why; an open alert chooses the outlets; a
technician cancels a long run; a viewer sees neither the form nor the cancel button."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.health.tables import Alert
from govedge_testbed import Mosquitto
from tests.health.test_config_ui import JS_ERRORS, _logged_in
from tests.server.helpers import FleetServer, poll
from tests.server.playbooks.kit import CLOSED, DATA, need_ansible

# Long enough to see a row before its result, short enough for a test.
PAUSE_S = 3
FINAL_S = 90_000  # ms: Ansible on a shared CI machine


@pytest.fixture
def fleet(broker: Mosquitto, tmp_path: Path) -> Iterator[FleetServer]:
    need_ansible()
    server = FleetServer(
        mqtt_url=broker.url, database_url=f"sqlite:///{tmp_path / 'f.db'}", workdir=tmp_path,
        GOVEDGE_PKI_DIR=str(tmp_path / "pki"), GOVEDGE_PII_KEY_DIR=str(tmp_path / "pii"),
        GOVEDGE_PLAYBOOKS_DIR=str(DATA), GOVEDGE_PLAYBOOK_RUNS_DIR=str(tmp_path / "runs"),
        GOVEDGE_PLAYBOOK_ALLOW_LOCAL="true",  # the outlets are this machine
        # A test seeds an open alert by hand (no device holds its condition): an engine
        # evaluating every 5 s would resolve it before the run is started.
        GOVEDGE_ALERT_EVAL_INTERVAL_S="3600",
    )  # fmt: skip
    server.start()
    JS_ERRORS.clear()
    try:
        yield server
        assert JS_ERRORS == []
    finally:
        assert server.stop() == 0, server.stderr()


def _outlet(fleet: FleetServer, outlet_id: str, folder: Path, *, hours: object = None,
            **host_vars: object) -> Path:  # fmt: skip
    folder.mkdir(parents=True)
    profile = {"outlet_id": outlet_id, "region_code": "410402", "opening_hours": hours or CLOSED}
    fleet.http.put("/api/v1/outlet-profiles", json=[profile]).raise_for_status()
    access = {"host_vars": {"ansible_connection": "local", "outlet_dir": str(folder),
                            "ansible_python_interpreter": sys.executable, **host_vars}}  # fmt: skip
    fleet.http.put(f"/api/v1/outlets/{outlet_id}/access", json=access).raise_for_status()
    return folder


def _host_state(page: Any, outlet: str) -> str:
    state: str = page.locator(f'tr[data-host="{outlet}"] [data-host-state]').get_attribute(
        "data-host-state"
    )
    return state


def test_a_technician_starts_a_run_and_watches_it_live(
    fleet: FleetServer, browser: Any, tmp_path: Path
) -> None:
    good = _outlet(fleet, "o-ui-a", tmp_path / "a")
    _outlet(fleet, "o-ui-b", tmp_path / "b", fail_here=True)
    _outlet(fleet, "o-ui-open", tmp_path / "open", hours="24h")
    tech = _logged_in(browser, fleet, "tina", "technician")
    tech.goto(f"{fleet.url}/ui/playbook-runs")
    assert tech.locator("header nav a.on").inner_text() == "运维剧本"
    tech.wait_for_selector("#run-form")
    assert tech.wait_for_selector("#no-runs") is not None  # the list is drawn after the form

    # A missing required variable: refused, and the page says what the server said.
    tech.fill("#pb-regions", "4104")
    tech.click("#btn-run")
    refused = tech.wait_for_selector("#pb-refused")
    assert refused is not None
    assert "422" in refused.inner_text()
    assert "marker_text: required" in refused.inner_text()

    tech.select_option("#pb-playbook", "mark.yml")
    tech.fill("#pb-var-marker_text", "网点已更新")
    tech.fill("#pb-var-pause_seconds", str(PAUSE_S))
    tech.click("#btn-run")
    tech.wait_for_url("**/ui/playbook-runs/1")
    assert tech.locator("header nav a.on").inner_text() == "运维剧本"
    tech.wait_for_selector('tr[data-host="o-ui-a"]')
    # Not finished yet when first drawn (the playbook waits PAUSE_S first) ...
    assert _host_state(tech, "o-ui-a") in ("pending", "ok")
    assert tech.locator("#btn-cancel").count() == 1
    tech.evaluate("window.__same_page = true")
    # ... then each row reaches its result on this same page.
    tech.wait_for_selector('tr[data-host="o-ui-a"] [data-host-state="changed"]', timeout=FINAL_S)
    tech.wait_for_selector('tr[data-host="o-ui-b"] [data-host-state="failed"]', timeout=FINAL_S)
    tech.wait_for_selector('#run-state[data-run-state="failed"]', timeout=FINAL_S)
    assert tech.evaluate("window.__same_page") is True  # no reload happened
    row_a = tech.locator('tr[data-host="o-ui-a"]')
    assert row_a.locator('[data-count="changed"]').inner_text() == "1"
    assert row_a.locator('[data-count="failed"]').inner_text() == "0"
    assert tech.locator('tr[data-host="o-ui-b"] [data-count="failed"]').inner_text() == "1"
    assert row_a.locator("[data-host-state]").inner_text() == "已变更"
    assert tech.locator('tr[data-host="o-ui-open"]').count() == 0  # not run ...
    reason = tech.locator('tr[data-held="o-ui-open"] .held-reason').inner_text()
    assert "never closes" in reason or "open now" in reason  # ... but listed with why
    assert tech.locator("#btn-cancel").count() == 0  # nothing to cancel any more
    assert (good / "marker.txt").read_text() == "网点已更新\n"

    # The list: who, the state, the outlets by result.
    tech.goto(f"{fleet.url}/ui/playbook-runs?lang=en")
    row = tech.locator('tr[data-run="1"]')
    row.wait_for()
    assert "mark.yml" in row.inner_text()
    assert "tina" in row.inner_text()
    assert row.locator("[data-run-state]").inner_text() == "failed"
    for state, n in (("changed", "1"), ("failed", "1"), ("held", "1")):
        assert row.locator(f'[data-count-state="{state}"]').inner_text().endswith(n)

    # The outlet's page: its result in that run, linking to the run.
    tech.goto(f"{fleet.url}/ui/outlets/o-ui-b?lang=en")
    result = tech.locator('#outlet-runs tr[data-run="1"]')
    result.wait_for()
    assert result.locator("[data-result]").inner_text() == "failed"
    assert result.locator('[data-count="failed"]').inner_text() == "1"
    assert "mark.yml" in result.inner_text()
    result.locator("a", has_text="mark.yml").click()
    tech.wait_for_url("**/ui/playbook-runs/1")
    tech.wait_for_selector('tr[data-host="o-ui-b"] [data-host-state="failed"]')


def test_an_open_alert_chooses_the_outlets_in_check_mode(
    fleet: FleetServer, browser: Any, tmp_path: Path
) -> None:
    paper = _outlet(fleet, "o-ui-paper", tmp_path / "paper")
    _outlet(fleet, "o-ui-fine", tmp_path / "fine")
    engine = make_engine(fleet.database_url)
    with make_sessionmaker(engine)() as session, session.begin():
        now = datetime.now(UTC)
        session.add(Alert(
            rule="printer_paper", outlet_id="o-ui-paper", device_id="printer-1",
            severity="warning", state="open", summary="缺纸", value=None, detail={},
            opened_at=now, updated_at=now,
        ))  # fmt: skip
    engine.dispose()
    tech = _logged_in(browser, fleet, "tom", "technician")
    tech.goto(f"{fleet.url}/ui/playbook-runs")
    tech.wait_for_selector("#run-form")
    tech.click("#btn-run")
    assert tech.wait_for_selector("#pb-no-target") is not None  # no target: not sent
    tech.fill("#pb-var-marker_text", "dry")
    tech.check('input[name=pb-alert-rule][value="printer_paper"]')
    tech.check("#pb-check")
    tech.click("#btn-run")
    tech.wait_for_url("**/ui/playbook-runs/1")
    tech.wait_for_selector('#run-state[data-run-state="successful"]', timeout=FINAL_S)
    assert tech.locator("tr[data-host]").count() == 1
    assert _host_state(tech, "o-ui-paper") == "changed"  # would change
    assert "打印机缺纸" in tech.locator("#run-target").inner_text()
    assert not (paper / "marker.txt").exists()  # check mode changed nothing


def test_a_technician_cancels_and_a_viewer_only_watches(
    fleet: FleetServer, browser: Any, tmp_path: Path
) -> None:
    _outlet(fleet, "o-ui-slow", tmp_path / "slow")
    started = fleet.http.post(
        "/api/v1/playbook-runs", json={"playbook": "slow.yml", "target": {"outlets": ["o-ui-slow"]}}
    )
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    poll(lambda: fleet.get(f"/api/v1/playbook-runs/{run_id}")["status"] == "running",
         timeout=30, what="the run running")  # fmt: skip

    viewer = _logged_in(browser, fleet, "vera", "viewer")
    viewer.goto(f"{fleet.url}/ui/playbook-runs?lang=en")
    viewer.wait_for_selector(f'tr[data-run="{run_id}"]')
    assert viewer.locator("#run-form").count() == 0
    assert viewer.locator("#read-only").inner_text().startswith("Read-only")
    viewer.goto(f"{fleet.url}/ui/playbook-runs/{run_id}?lang=en")
    viewer.wait_for_selector('#run-state[data-run-state="running"]')
    assert viewer.locator("#btn-cancel").count() == 0
    assert viewer.locator("#read-only").count() == 1

    tech = _logged_in(browser, fleet, "ted", "technician")
    tech.goto(f"{fleet.url}/ui/playbook-runs/{run_id}?lang=en")
    tech.click("#btn-cancel")
    assert tech.wait_for_selector("#pb-cancel-asked") is not None
    tech.wait_for_selector('#run-state[data-run-state="canceled"]', timeout=FINAL_S)
    assert "ted" in tech.locator("#run-head").inner_text()
    # The viewer's page follows it too, without a reload.
    viewer.wait_for_selector('#run-state[data-run-state="canceled"]', timeout=FINAL_S)
    assert viewer.locator('tr[data-host="o-ui-slow"] [data-host-state]').inner_text() == "canceled"
