"""The operator UI in a real headless Chromium (Debian's, driven by Playwright): the map
shows a real agent online, then offline after it is killed (pushed over SSE, no reload);
the language switches; screenshots go to the test's tmp dir."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from govedge_testbed import Mosquitto
from tests.e2e.conftest import Agent
from tests.server.helpers import FleetServer

CHROMIUM = "/usr/bin/chromium"
_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip  # noqa: E501
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail("chromium missing under CI=true")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=_ARGS)
        yield chromium
        chromium.close()


def test_map_shows_a_killed_agent_offline_and_switches_language(
    private_broker: Mosquitto, tmp_path: Path, browser: object
) -> None:
    fleet = FleetServer(
        mqtt_url=private_broker.url, database_url=f"sqlite:///{tmp_path / 'f.db'}",
        workdir=tmp_path, GOVEDGE_API_AUTH="off", GOVEDGE_PKI_DIR=str(tmp_path / "pki"),
        GOVEDGE_ALERT_EVAL_INTERVAL_S="0.5",
    )  # fmt: skip
    fleet.start()
    agent = Agent(outlet_id="township-ui-01", data_dir=tmp_path / "agent",
                  mqtt_url=private_broker.url, log=tmp_path / "agent.log")  # fmt: skip
    try:
        profiles = [
            {"outlet_id": "township-ui-01", "name": "城关镇便民服务中心", "kind": "township_centre",
             "region_code": "410402", "latitude": 33.737, "longitude": 113.300,
             "opening_hours": {"mon": ["08:30-17:30"]}, "service_items": ["社保卡申领", "户籍证明"]},  # noqa: E501
            {"outlet_id": "kiosk-ui-02", "name": "新华路24小时自助服务区", "kind": "kiosk",
             "region_code": "410402", "latitude": 33.760, "longitude": 113.330,
             "opening_hours": "24h", "service_items": ["不动产查询"]},
        ]  # fmt: skip
        fleet.http.put("/api/v1/outlet-profiles", json=profiles).raise_for_status()
        agent.start()
        fleet.wait_state("township-ui-01", "online", timeout=30)

        page = browser.new_page(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
        page.goto(f"{fleet.url}/ui/map")
        page.wait_for_selector('circle[data-outlet="township-ui-01"][data-state="online"]')
        page.wait_for_selector("#live:not(.off)")
        assert page.locator("header h1").inner_text() == "政务服务网点运维监控"
        page.click('circle[data-outlet="township-ui-01"]')
        assert "社保卡申领" in page.locator("#detail").inner_text()
        page.screenshot(path=str(tmp_path / "map-online-zh.png"))

        agent.signal(signal.SIGKILL)
        agent.wait(timeout=5)
        # The broker publishes the will after 1.5 x keepalive (2 s); the page is told by SSE.
        page.wait_for_selector(
            'circle[data-outlet="township-ui-01"][data-state="offline"]', timeout=20_000
        )
        page.screenshot(path=str(tmp_path / "map-offline-zh.png"))

        page.click("#lang-switch")
        page.wait_for_selector("html[lang=en]")
        assert page.locator("header h1").inner_text() == "Outlet fleet operations"
        page.goto(f"{fleet.url}/ui/overview")  # the cookie keeps English
        assert page.locator("header h1").inner_text() == "Outlet fleet operations"
        assert page.locator("#n-offline").inner_text() == "1"
        page.screenshot(path=str(tmp_path / "overview-en.png"), full_page=True)

        page.goto(f"{fleet.url}/ui/outlets/township-ui-01?lang=zh")
        page.wait_for_selector('#outlet-state [data-state="offline"]')
        assert "最近事件" in page.content()
        page.screenshot(path=str(tmp_path / "outlet-zh.png"), full_page=True)
        page.goto(f"{fleet.url}/ui/evaluations")
        assert page.locator("#no-data").inner_text() == "暂无数据"
    finally:
        agent.stop()
        assert fleet.stop() == 0, fleet.stderr()
