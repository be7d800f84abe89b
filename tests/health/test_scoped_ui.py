"""A county operator (a user scoped to one region prefix) in a real headless Chromium,
logged in through the login form: the map and the overview show only the county's
outlets, and another county's outlet page answers 404."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from govedge_testbed import Mosquitto
from tests.health.conftest import logged_in_context
from tests.server.helpers import FleetServer

INSIDE, OUTSIDE = "410402-0001", "420101-0001"


@pytest.fixture
def fleet(broker: Mosquitto, tmp_path: Path) -> Iterator[FleetServer]:
    server = FleetServer(
        mqtt_url=broker.url, database_url=f"sqlite:///{tmp_path / 'f.db'}", workdir=tmp_path,
        GOVEDGE_PKI_DIR=str(tmp_path / "pki"),
    )  # fmt: skip
    server.start()
    try:
        profiles = [
            {"outlet_id": INSIDE, "name": "城关镇便民服务中心", "kind": "township_centre",
             "region_code": "410402", "latitude": 33.737, "longitude": 113.300},
            {"outlet_id": OUTSIDE, "name": "江岸区政务服务中心", "kind": "township_centre",
             "region_code": "420101", "latitude": 30.600, "longitude": 114.300},
        ]  # fmt: skip
        server.http.put("/api/v1/outlet-profiles", json=profiles).raise_for_status()
        yield server
    finally:
        assert server.stop() == 0, server.stderr()


def test_a_county_operator_sees_only_the_county(fleet: FleetServer, browser: object) -> None:
    context = logged_in_context(
        browser, fleet, "county-op", "operator", regions=("4104",),
        viewport={"width": 1280, "height": 800},
    )  # fmt: skip
    page = context.new_page()
    page.goto(f"{fleet.url}/ui/map")
    page.wait_for_selector(f'circle[data-outlet="{INSIDE}"]')
    assert page.locator(f'circle[data-outlet="{OUTSIDE}"]').count() == 0
    page.goto(f"{fleet.url}/ui/overview")
    page.wait_for_load_state("networkidle")
    overview = page.content()
    assert OUTSIDE not in overview
    assert "江岸区" not in overview
    answer = page.goto(f"{fleet.url}/ui/outlets/{OUTSIDE}")
    assert answer is not None
    assert answer.status == 404
    answer = page.goto(f"{fleet.url}/ui/outlets/{INSIDE}")
    assert answer is not None
    assert answer.status == 200
    assert "城关镇便民服务中心" in page.content()
    # the same page as a whole-fleet viewer shows both
    province = logged_in_context(browser, fleet, "province-viewer", "viewer")
    whole = province.new_page()
    whole.goto(f"{fleet.url}/ui/map")
    whole.wait_for_selector(f'circle[data-outlet="{OUTSIDE}"]')
    whole.wait_for_selector(f'circle[data-outlet="{INSIDE}"]')
    province.close()
    context.close()
