"""The demo looks like a fleet: what a new operator checks in the first minute.

The demo runs as printed in the README; the operator logs in through the printed login
in Chromium and reads what the pages read (the same session, through the API): outlets
on the map inside the province, their kinds and regions, the catalogue, an outlet's
history, 好差评 with a rectification from a 差评, a case filed at the printed clerk API
that came back from the demo upstream with its case number, the regions' outlines on
the map, and the time series in VictoriaMetrics.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from govedge_wire.pii import make_id_number
from tests.conftest import missing
from tests.health.conftest import login_form
from tests.health.demo_run import running_demo

T = TypeVar("T")

# The demo's province (Zhejiang, code 33) within its rough bounds.
PROVINCE = "33"
LATITUDES, LONGITUDES = (27.0, 31.2), (118.0, 123.2)
KINDS = {"township_centre", "street_centre", "bank_counter", "village_station", "kiosk"}
FIRST, SECOND = "township-dinghai-01", "bank-pds-icbc-01"
# What the demo's clerk files; the test's own case uses an item of the first outlet.
SUBMISSION = {
    "item_code": "3309-000201",  # 社会保障卡申领 in Zhoushan (catalogue.csv)
    "region_code": "330902104",
    "applicant": {"name": "测试申请人", "id_number": make_id_number("330902", "19850315", 1)},
    "window": "1",
    "clerk": "S002",
}


def _eventually(read: Callable[[], T], ok: Callable[[T], bool], what: str) -> T:
    """``read()`` every second until ``ok`` holds (the demo fills in as it runs)."""
    deadline = time.monotonic() + 60
    while True:
        value = read()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"the demo never showed {what}: {value!r}")
        time.sleep(1)


def test_the_demo_fleet_shows_data_a_new_operator_looks_for(tmp_path: Path, browser: Any) -> None:
    with running_demo(tmp_path / "demo", outlets=2) as printed:
        url = printed.value(r"operator pages: (http://127\.0\.0\.1:\d+)/$")
        clerk_api = printed.value(r"clerk local API of \S+ \(simulated devices\): (\S+)")
        clerk_token = printed.value(r"clerk app token \(demo only\): (\S+)$")
        page = browser.new_page()
        page.goto(url + "/")
        login_form(page, printed.value(r"user name: (\S+)$"), printed.value(r"password:\s+(\S+)"))
        page.wait_for_url("**/ui/overview")

        def api(path: str) -> Any:  # with the session the login made, as the pages do
            answer = page.request.get(url + path)
            assert answer.ok, (path, answer.status, answer.text())
            return answer.json()

        # A case filed at the printed clerk API comes back with the upstream's number.
        with httpx.Client(
            base_url=clerk_api, headers={"Authorization": f"Bearer {clerk_token}"}, timeout=30
        ) as clerk:
            filed = clerk.post(
                "/v1/submissions", json=SUBMISSION, headers={"Idempotency-Key": "first-day-1"}
            )
            assert filed.status_code == httpx.codes.ACCEPTED, filed.text
            status = _eventually(
                lambda: clerk.get("/v1/transactions/first-day-1").json(),
                lambda s: s["status"] == "delivered",
                "the case delivered",
            )
        assert status["case_number"].startswith("ZJ"), status
        on_server = api(f"/api/v1/outlets/{FIRST}/transactions/first-day-1")
        assert on_server["case_number"] == status["case_number"]

        points = api("/api/v1/fleet/map-points")
        assert {p["id"] for p in points} == {FIRST, SECOND}
        for point in points:
            assert LATITUDES[0] < point["lat"] < LATITUDES[1], point
            assert LONGITUDES[0] < point["lon"] < LONGITUDES[1], point

        outlets = api("/api/v1/outlets.geojson")["features"]
        kinds = {f["id"]: f["properties"]["kind"] for f in outlets}
        assert kinds == {FIRST: "township_centre", SECOND: "bank_counter"}
        for feature in outlets:
            facts = feature["properties"]
            assert facts["region_code"].startswith(PROVINCE), facts
            assert facts["name"] != feature["id"], facts
            assert facts["service_items"], facts
            assert facts["opening_hours"], facts
        regions = {r["code"]: r for r in api("/api/v1/regions")}
        for facts in (f["properties"] for f in outlets):
            county = regions[regions[facts["region_code"]]["parent_code"]]
            assert regions[county["parent_code"]]["parent_code"] == PROVINCE, county

        items = api("/api/v1/catalogue/items")
        assert "社会保障卡申领" in {item["name"] for item in items}
        assert {item["target"] for item in items} == {"zj-platform"}

        history = _eventually(
            lambda: api(f"/api/v1/outlets/{FIRST}/health")["history"],
            lambda points: len(points) >= 2,
            "two history points",
        )
        assert "cpu_percent" in history[-1]["metrics"]

        rectifications = _eventually(
            lambda: api("/api/v1/rectifications")["items"], bool, "a rectification from a 差评"
        )
        assert all(r["stars"] <= 2 for r in rectifications)
        stats = _eventually(
            lambda: api("/api/v1/evaluations/stats"),
            lambda s: s["evaluations"] >= 2 and 0 < (s["satisfaction_rate"] or 0) < 1,
            "satisfied and dissatisfied ratings",
        )
        assert stats["bad_reviews"] >= 1
        page.screenshot(path=str(tmp_path / "demo-fleet-overview.png"), full_page=True)
        page.goto(url + "/ui/map")  # the outlets placed on the map, seen as the user sees it
        page.wait_for_selector("#map [data-outlet]")
        placed = page.locator("#map [data-outlet]").evaluate_all(
            "nodes => nodes.map((n) => n.dataset.outlet)"
        )
        assert sorted(placed) == [SECOND, FIRST]
        # The regions' outlines from the bundled data, drawn under the points.
        outlined = {r["name"] for r in api("/api/v1/regions") if r.get("outline")}
        drawn = page.locator("#map polygon.region title").evaluate_all(
            "nodes => nodes.map((n) => n.textContent)"
        )
        assert outlined
        assert set(drawn) == outlined, drawn
        page.screenshot(path=str(tmp_path / "demo-fleet-map.png"), full_page=True)
        page.goto(f"{url}/ui/outlets/{FIRST}")
        page.wait_for_selector("svg.spark")  # a history chart drawn, not "no data"
        page.screenshot(path=str(tmp_path / "demo-fleet-outlet.png"), full_page=True)
        page.close()

        # VictoriaMetrics started (it is installed for the tests) and records the
        # outlets' series for Grafana.
        series = printed.value(r"time series: (.+)$")
        if not series.startswith("http://"):
            missing(f"VictoriaMetrics: {series}")
        match = urllib.parse.urlencode({"match[]": f'outlet_cpu_percent{{outlet_id="{FIRST}"}}'})
        recorded = _eventually(
            lambda: httpx.get(f"{series}/api/v1/export?{match}", timeout=10).text,
            lambda text: '"values"' in text,
            "the outlet's CPU series in VictoriaMetrics",
        )
        assert len(json.loads(recorded.splitlines()[0])["values"]) >= 1
