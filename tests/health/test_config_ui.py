"""The config pages in a real headless Chromium, with authentication on: operators log
in at /ui/login with a password and the page's API calls ride the session cookie. An
operator edits the global scope, validates, saves, sees the version in the history and
a diff; the outlet page shows which scope set each value; a second operator saving
meanwhile is told so and keeps their text; a viewer gets no save or rollback buttons."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from govedge_testbed import Mosquitto
from tests.health.conftest import logged_in_context
from tests.server.helpers import FleetServer

OUTLET = "hz-cfg-01"
# Strings an operator could type into a comment or a config value: shown as text only.
EVIL_COMMENT = "</script><script>window.__pwned=1</script>"
EVIL_TEXT = "请{ticket}号<img src=x onerror=window.__pwned=2>"
# Uncaught errors of every page the tests open (checked empty at the end of each test).
JS_ERRORS: list[str] = []
EVIL_SCOPE = "region:</script><img src=x onerror=window.__pwned=3>"


@pytest.fixture
def fleet(broker: Mosquitto, tmp_path: Path) -> Iterator[FleetServer]:
    server = FleetServer(
        mqtt_url=broker.url, database_url=f"sqlite:///{tmp_path / 'f.db'}", workdir=tmp_path,
        GOVEDGE_PKI_DIR=str(tmp_path / "pki"),
    )  # fmt: skip
    server.start()
    JS_ERRORS.clear()
    profile = {
        "outlet_id": OUTLET, "name": "西湖区便民服务中心", "kind": "township_centre",
        "region_code": "330106", "opening_hours": {"mon": ["08:30-17:30"]},
    }  # fmt: skip
    server.http.put("/api/v1/outlet-profiles", json=[profile]).raise_for_status()
    try:
        yield server
        assert JS_ERRORS == []
    finally:
        assert server.stop() == 0, server.stderr()


def _logged_in(browser: Any, fleet: FleetServer, name: str, role: str) -> Any:
    """A page with a session for a new user of ``role`` (logged in at /ui/login)."""
    context = logged_in_context(browser, fleet, name, role, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("dialog", lambda d: d.dismiss())
    page.on("pageerror", lambda error: JS_ERRORS.append(str(error)))
    page.goto(f"{fleet.url}/ui/overview")
    return page


def _edit(page: Any, document: dict[str, Any]) -> None:
    page.fill("#ed-doc", json.dumps(document, ensure_ascii=False, indent=2))


def _save(page: Any, comment: str, expect: str = "#saved") -> None:
    page.fill("#ed-comment", comment)
    page.click("#btn-save")
    page.wait_for_selector(expect)


def test_edit_validate_save_history_diff_and_the_outlets_layers(
    fleet: FleetServer, browser: Any, tmp_path: Path
) -> None:
    alice = _logged_in(browser, fleet, "alice", "operator")
    alice.goto(f"{fleet.url}/ui/config")
    assert alice.locator("header nav a.on").inner_text() == "配置管理"
    assert alice.locator("#all-in-sync").count() == 0  # the outlet never reported: listed
    assert alice.locator(f'tr[data-drift="{OUTLET}"] [data-cfg-status]').inner_text() == "未知"

    # A new global scope: validate shows the outlet that changes, save stores version 1.
    alice.fill("#scope-input", "global")
    alice.click("#open-scope button")
    alice.wait_for_selector("#editor:not([hidden])")
    assert alice.locator("#ed-base").inner_text() == "新建层级(尚无版本)"
    windows = [{"window": "1", "business_types": ["A"], "pad": "pad-1"},
               {"window": "2", "business_types": ["A"], "pad": "pad-2"}]  # fmt: skip
    first = {"telemetry": {"interval_s": 30}, "log_level": "INFO", "queue": {"windows": windows}}
    _edit(alice, first)
    alice.click("#btn-validate")
    alice.wait_for_selector("#dry-run")
    assert "1 个网点" in alice.locator("#dry-run").inner_text()
    assert alice.locator(f'#dry-run [data-outlet="{OUTLET}"] tr[data-path="log_level"]').count()
    _save(alice, "全省默认配置")
    assert alice.locator("#saved").inner_text() == "已保存为版本 1"
    alice.wait_for_selector('tr[data-scope="global"] td.version:text-is("1")')

    # Validation errors are shown and nothing is stored.
    _edit(alice, {"telemetry": {"interval_s": "often"}, "unknown_part": 1})
    alice.click("#btn-validate")
    alice.wait_for_selector("#invalid")
    errors = alice.locator("#ed-errors").inner_text()
    assert "telemetry.interval_s" in errors
    assert "unknown_part" in errors

    # Dropping window 2 takes a device away from citizens: flagged before saving.
    second = {"telemetry": {"interval_s": 60}, "log_level": "INFO",
              "queue": {"windows": windows[:1], "announcement": EVIL_TEXT}}  # fmt: skip
    _edit(alice, second)
    alice.click("#btn-validate")
    alice.wait_for_selector("#takes-away")
    assert "window 2 removed" in alice.locator(f'#dry-run [data-outlet="{OUTLET}"]').inner_text()
    _save(alice, EVIL_COMMENT)
    assert alice.locator("#saved").inner_text() == "已保存为版本 2"

    # The history has both versions; the diff of 1 → 2 names what changed.
    alice.wait_for_selector('#hist-list tr[data-version="2"]')
    assert EVIL_COMMENT in alice.locator('#hist-list tr[data-version="2"]').inner_text()
    assert "全省默认配置" in alice.locator('#hist-list tr[data-version="1"]').inner_text()
    alice.select_option("#diff-from", "1")
    alice.select_option("#diff-to", "2")
    alice.click("#btn-diff")
    alice.wait_for_selector("#diff-table")
    interval = alice.locator('#diff-table tr[data-path="telemetry.interval_s"] td')
    assert interval.all_inner_texts() == ["telemetry.interval_s", "修改", "30", "60"]
    assert alice.locator('#diff-table tr[data-path="queue.announcement"]').count() == 1
    assert EVIL_COMMENT in alice.locator('tr[data-scope="global"]').inner_text()
    alice.screenshot(path=str(tmp_path / "config-global-zh.png"), full_page=True)

    # A region scope over global: the outlet page names the layer of each value.
    alice.fill("#scope-input", "region:3301")
    alice.click("#open-scope button")
    alice.wait_for_selector("#ed-scope:text-is('region:3301')")
    _edit(alice, {"telemetry": {"interval_s": 15}})
    _save(alice, "杭州采样加密")

    alice.goto(f"{fleet.url}/ui/outlets/{OUTLET}?lang=en")
    section = alice.locator("#config")
    section.wait_for()
    interval_row = section.locator('tr[data-path="telemetry.interval_s"]')
    assert interval_row.locator("td.val").inner_text() == "15"
    assert interval_row.locator("td.layer").inner_text() == "region:3301"
    level_row = section.locator('tr[data-path="log_level"]')
    assert (level_row.locator("td.val").inner_text(), level_row.locator("td.layer").inner_text()) \
        == ("INFO", "global")  # fmt: skip
    assert section.locator('tr[data-path="queue.announcement"] td.val').inner_text() == EVIL_TEXT
    # No agent ever reported: the status says so, with the sentence why.
    assert section.locator("[data-cfg-status]").inner_text() == "unknown"
    assert "not reported" in section.locator("#config-reason").inner_text()
    assert alice.evaluate("window.__pwned") is None
    # the outlet page's boot data, config.js, playbooks.js, app.js
    assert alice.locator("script").count() == 4
    alice.screenshot(path=str(tmp_path / "outlet-config-en.png"), full_page=True)

    # The layer links open that scope's editor.
    section.locator('tr[data-path="telemetry.interval_s"] td.layer a').click()
    alice.wait_for_selector("#ed-scope:text-is('region:3301')")
    assert json.loads(alice.locator("#ed-doc").input_value()) == {"telemetry": {"interval_s": 15}}

    # A hostile scope in the address: not a scope, and shown as text.
    alice.goto(f"{fleet.url}/ui/config?scope={quote(EVIL_SCOPE)}")
    alice.wait_for_selector("#bad-scope")
    assert EVIL_SCOPE in alice.locator("#bad-scope").inner_text()
    assert alice.locator("#editor").is_hidden()
    assert alice.evaluate("window.__pwned") is None
    alice.context.close()  # its event stream would hold the server's shutdown


def test_a_second_operator_saving_meanwhile_is_told_and_keeps_their_text(
    fleet: FleetServer, browser: Any, tmp_path: Path
) -> None:
    fleet.http.put(
        "/api/v1/config/global", json={"log_level": "INFO"}, params={"comment": "start"}
    ).raise_for_status()
    alice = _logged_in(browser, fleet, "alice", "operator")
    bob = _logged_in(browser, fleet, "bob", "operator")
    for page in (alice, bob):
        page.goto(f"{fleet.url}/ui/config?scope=global&lang=en")
        page.wait_for_selector("#ed-base:text-is('based on version 1')")

    _edit(alice, {"log_level": "WARNING"})
    _save(alice, "quieter")
    mine = {"log_level": "DEBUG", "telemetry": {"interval_s": 5}}
    _edit(bob, mine)
    _save(bob, "debugging", expect="#conflict")
    assert "someone else saved version 2" in bob.locator("#conflict").inner_text()
    assert json.loads(bob.locator("#ed-doc").input_value()) == mine  # nothing lost
    theirs = bob.locator('#their-changes tr[data-path="log_level"] td')
    assert theirs.all_inner_texts() == ["log_level", "changed", '"INFO"', '"WARNING"']
    assert fleet.get("/api/v1/config/global")["document"] == {"log_level": "WARNING"}
    bob.screenshot(path=str(tmp_path / "config-conflict-en.png"), full_page=True)

    # Having seen their change, bob stores his text over it on purpose.
    bob.click("#btn-save-over")
    bob.wait_for_selector("#saved")
    stored = fleet.get("/api/v1/config/global")
    assert (stored["version"], stored["author"], stored["document"]) == (3, "bob", mine)

    # Rollback to version 1 from the history: a new version with version 1's document.
    alice.goto(f"{fleet.url}/ui/config?scope=global&lang=en")
    alice.fill("#ed-comment", "back to the start")
    alice.click('#hist-list tr[data-version="1"] button[data-rollback]')
    alice.wait_for_selector("#rolled-back")
    assert alice.locator("#rolled-back").inner_text() == "Rolled back: new version 4"
    assert json.loads(alice.locator("#ed-doc").input_value()) == {"log_level": "INFO"}
    rolled = alice.locator('#hist-list tr[data-version="4"]').inner_text()
    assert "back to the start" in rolled
    assert "rollback of version 1" in rolled

    # A viewer reads everything but gets no way to change it.
    viewer = _logged_in(browser, fleet, "vera", "viewer")
    viewer.goto(f"{fleet.url}/ui/config?scope=global")
    viewer.wait_for_selector('#hist-list tr[data-version="4"]')
    assert viewer.locator("#read-only").inner_text() == "只读:您的角色不能修改配置"
    for button in ("#btn-save", "#btn-validate", "button[data-rollback]"):
        assert viewer.locator(button).count() == 0, button
    assert viewer.locator("#ed-doc").get_attribute("readonly") is not None
    for page in (alice, bob, viewer):
        page.context.close()


def test_a_refused_config_shows_in_words_on_the_outlet_page_and_first_in_drift(
    fleet: FleetServer, browser: Any, tmp_path: Path
) -> None:
    # What the reconciler and the agent's report leave behind: version 3 was signed,
    # the agent still runs 2 and refused 3.
    from fleet_server.config.tables import OutletConfig
    from fleet_server.db import make_engine, make_sessionmaker
    from govedge_wire.config import config_hash

    other = {"outlet_id": "hz-cfg-00", "name": "未上报网点", "kind": "kiosk",
             "region_code": "330106", "opening_hours": "24h"}  # fmt: skip
    fleet.http.put("/api/v1/outlet-profiles", json=[other]).raise_for_status()
    at = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    engine = make_engine(fleet.database_url)
    try:
        with make_sessionmaker(engine)() as session, session.begin():
            session.add(
                OutletConfig(
                    # The hash of the (empty) effective config, so the running
                    # reconciler leaves the row alone until the region change below.
                    outlet_id=OUTLET, desired_version=3, desired_hash=config_hash({}),
                    desired={}, issued_at=at, published_at=at,
                    reported_version=2, reported_hash="a" * 64, reported_at=at,
                    refused_version=3, refused_reason="unknown_key",
                    refused_detail=f"key ed25519-00 {EVIL_TEXT}", refused_at=at,
                )
            )  # fmt: skip
    finally:
        engine.dispose()

    page = _logged_in(browser, fleet, "vera", "viewer")
    page.goto(f"{fleet.url}/ui/outlets/{OUTLET}")
    section = page.locator("#config")
    section.wait_for()
    assert section.locator("[data-cfg-status]").inner_text() == "被拒绝"
    refusal = section.locator("#last-refusal").inner_text()
    assert refusal.startswith("签名密钥未知")
    assert EVIL_TEXT in refusal
    assert section.locator("#desired-version").inner_text() == "3"
    assert section.locator("#reported-version").inner_text() == "2"
    assert page.evaluate("window.__pwned") is None
    page.screenshot(path=str(tmp_path / "outlet-refused-zh.png"), full_page=True)

    drift = page.context.new_page()
    drift.goto(f"{fleet.url}/ui/config?lang=en")
    # The refusal has a time, the outlet that never reported has none: it comes last.
    rows = drift.locator("tr[data-drift]")
    assert [rows.nth(i).get_attribute("data-drift") for i in range(2)] == [OUTLET, "hz-cfg-00"]
    first = rows.first
    assert first.locator("[data-cfg-status]").inner_text() == "refused"
    first.locator("a").click()
    drift.wait_for_url(f"**/ui/outlets/{OUTLET}")

    # A live update (a region change, which the running reconciler signs as version 4
    # over the refused 3) refetches the section from the config API; the refusal stays
    # shown until the agent reports again.
    fleet.http.put("/api/v1/config/region:3301", json={"log_level": "DEBUG"}).raise_for_status()
    fleet.http.put("/api/v1/outlet-profiles", json=[other]).raise_for_status()
    page.wait_for_selector('#config tr[data-path="log_level"] td.layer[data-layer="region:3301"]')
    assert section.locator("#last-refusal").inner_text().startswith("签名密钥未知")

    page.context.close()
