"""The operator UI in a real headless Chromium (Debian's, driven by Playwright): the map
shows a real agent online, then offline after it is killed (pushed over SSE, no reload);
the language switches; login is on, as in production (a viewer logs in through the
login page); screenshots go to the test's tmp dir. The browser fixture is in
conftest.py."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from govedge_testbed import Mosquitto
from govedge_wire import Birth
from tests.e2e.conftest import Agent
from tests.health.conftest import logged_in_context
from tests.server.helpers import FakeAgent, FleetServer, poll


def test_map_shows_a_killed_agent_offline_and_switches_language(
    private_broker: Mosquitto, tmp_path: Path, browser: object
) -> None:
    fleet = FleetServer(
        mqtt_url=private_broker.url, database_url=f"sqlite:///{tmp_path / 'f.db'}",
        workdir=tmp_path, GOVEDGE_PKI_DIR=str(tmp_path / "pki"),
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

        context = logged_in_context(
            browser, fleet, "ui-viewer", "viewer", viewport={"width": 1280, "height": 800}
        )
        page = context.new_page()
        page.goto(f"{fleet.url}/ui/map")
        page.wait_for_selector('circle[data-outlet="township-ui-01"][data-state="online"]')
        page.wait_for_selector("#live:not(.off)")
        assert page.locator("header h1").inner_text() == "政务服务网点运维监控"
        # Few outlets: each point is labelled with its name; the kiosk is the smaller dot.
        names = page.locator("#map text").all_text_contents()
        assert sorted(names) == ["城关镇便民服务中心", "新华路24小时自助服务区"]
        assert page.get_attribute('circle[data-outlet="kiosk-ui-02"]', "r") == "5"
        # A click fetches the outlet's card (the points carry no profile).
        page.click('circle[data-outlet="township-ui-01"]')
        page.wait_for_selector("#detail:has-text('社保卡申领')")
        assert "08:30" in page.locator("#detail").inner_text()
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


# Outlet-controlled strings that would break out of the page's boot <script> element.
_EVIL_ID = "pad<!--<script>window.__pwned=1//"
_EVIL_MODEL = "</script><img src=x onerror=window.__pwned=2>"


def test_a_hostile_device_id_from_a_birth_shows_as_text(
    broker: Mosquitto, tmp_path: Path, browser: object
) -> None:
    fleet = FleetServer(
        mqtt_url=broker.url, database_url=f"sqlite:///{tmp_path / 'f.db'}",
        workdir=tmp_path, GOVEDGE_PKI_DIR=str(tmp_path / "pki"),
    )  # fmt: skip
    fleet.start()
    agent = FakeAgent(broker.url, "township-xss-01")
    try:
        agent.send(
            Birth(
                outlet_id=agent.outlet_id, session=agent.session, seq=agent.seq,
                agent_version="0.1.0-test", hostname="pc", os="Debian 12",
                devices=[{"device_id": _EVIL_ID, "kind": "evaluation_pad", "model": _EVIL_MODEL}],
                config_version=1, telemetry_interval_s=5.0, keepalive_s=30,
            )
        )  # fmt: skip
        fleet.wait_state(agent.outlet_id, "online", timeout=30)

        page = logged_in_context(browser, fleet, "xss-viewer", "viewer").new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"{fleet.url}/ui/outlets/{agent.outlet_id}?lang=en")
        page.wait_for_selector('#outlet-state [data-state="online"]')
        row = page.locator("tr[data-device]")
        assert row.get_attribute("data-device") == _EVIL_ID
        assert _EVIL_ID in row.inner_text()
        assert _EVIL_MODEL in row.inner_text()
        assert page.evaluate("window.__pwned") is None
        assert dialogs == []
        # the outlet page's boot data, config.js, playbooks.js, app.js: nothing injected
        assert page.locator("script").count() == 4
        page.screenshot(path=str(tmp_path / "outlet-hostile-device.png"), full_page=True)
        page.close()  # its event stream would hold the server's shutdown
    finally:
        agent.close()
        assert fleet.stop() == 0, fleet.stderr()


@pytest.mark.timeout(180)
def test_the_map_asks_its_points_with_its_data_and_loads_one_at_a_time(
    private_broker: Mosquitto, tmp_path: Path, browser: object
) -> None:
    """Where the drawn map's time went at 10,000 outlets (bench/web_draw.py): the points
    were asked only after the page's data had come, and the stream's first event started
    a second load beside the first. Now both are asked at once, loads never overlap, and
    the first event, which repeats the number the page was read at, loads nothing."""
    fleet = FleetServer(
        mqtt_url=private_broker.url, database_url=f"sqlite:///{tmp_path / 'f.db'}",
        workdir=tmp_path, GOVEDGE_PKI_DIR=str(tmp_path / "pki"),
    )  # fmt: skip
    fleet.start()
    try:
        fleet.http.put("/api/v1/outlet-profiles", json=[
            {"outlet_id": f"map-{n}", "name": f"Outlet {n}", "kind": "kiosk",
             "region_code": "410402", "latitude": 33.7 + n / 100, "longitude": 113.3,
             "service_items": []} for n in range(3)
        ]).raise_for_status()  # fmt: skip
        context = logged_in_context(browser, fleet, "map-viewer", "viewer")
        page = context.new_page()
        events: list[tuple[str, str]] = []  # (asked | done, which), in the order they came

        def which(url: str) -> str | None:
            return (
                "points"
                if "/fleet/map-points" in url
                else "data"
                if "/ui/data/map" in url
                else None
            )

        page.on("request", lambda r: (w := which(r.url)) and events.append(("asked", w)))
        page.on("requestfinished", lambda r: (w := which(r.url)) and events.append(("done", w)))
        page.goto(f"{fleet.url}/ui/map")
        page.wait_for_selector("#live:not(.off)")
        page.wait_for_selector('circle[data-outlet="map-2"]')

        # Playwright's sync API delivers page events only while one of its calls runs
        # (time.sleep delivers none), so the wait between probes is the page's own.
        def all_finished() -> bool:
            page.wait_for_timeout(50)
            return events.count(("asked", "points")) == events.count(("done", "points"))

        try:
            poll(all_finished, timeout=30, what="every load of the points finished")
        except AssertionError as missing:
            raise AssertionError(f"{missing}; requests seen: {events}") from None
        # The stream's first event (it came as #live turned on) repeats the number the
        # page was read at: no second load for it. A real change still loads.
        page.wait_for_timeout(1500)
        assert events.count(("asked", "points")) == 1, events
        fleet.http.put("/api/v1/outlet-profiles", json=[
            {"outlet_id": "map-3", "name": "Outlet 3", "kind": "kiosk", "region_code": "410402",
             "latitude": 33.9, "longitude": 113.3, "service_items": []}
        ]).raise_for_status()  # fmt: skip
        page.wait_for_selector('circle[data-outlet="map-3"]')
        poll(all_finished, timeout=30, what="the second load finished")
        assert events.count(("asked", "points")) == 2, events
        context.close()
    finally:
        assert fleet.stop() == 0, fleet.stderr()
    assert events.index(("asked", "points")) < events.index(("done", "data"))
    in_flight = peak = 0
    for step, what in events:
        if what == "points":
            in_flight += 1 if step == "asked" else -1
            peak = max(peak, in_flight)
    assert peak == 1, events
