"""The policy figures on the 好差评 page in a real headless Chromium, logged in through
the login form: totals against their targets, one row per kind or region, in Chinese
and English, and the per-outlet table with its 默认评价 column, from records the test
makes in the server's database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleet_server.db import make_engine, make_sessionmaker
from govedge_testbed import Mosquitto
from tests.health import records
from tests.health.conftest import logged_in_context
from tests.server.helpers import FleetServer


@pytest.fixture
def fleet(broker: Mosquitto, tmp_path: Path) -> Iterator[FleetServer]:
    server = FleetServer(
        mqtt_url=broker.url, database_url=f"sqlite:///{tmp_path / 'f.db'}", workdir=tmp_path,
        GOVEDGE_PKI_DIR=str(tmp_path / "pki"),
    )  # fmt: skip
    server.start()
    engine = make_engine(server.database_url)
    ago = datetime.now(UTC) - timedelta(days=3)
    try:
        with make_sessionmaker(engine).begin() as session:
            records.outlet(session, "town-a", kind="township_centre", region="410522100", at=ago,
                           items=[f"X{i}" for i in range(200)])  # fmt: skip
            records.outlet(session, "town-b", kind="township_centre", region="410523100", at=ago)
            records.outlet(session, "kiosk-a", kind="kiosk", region="410522100", at=ago,
                           hours="24h")  # fmt: skip
            records.cases(session, "town-a", 10, at=ago)
            records.evaluations(session, "town-a", [5, 5, 4, 4, 3], at=ago)
            records.evaluations(session, "town-a", [5], at=ago, default=True)
            records.ticket(session, "town-a", opened=ago, follow_up="回访")
        yield server
    finally:
        engine.dispose()
        assert server.stop() == 0, server.stderr()


def test_the_figures_by_kind_and_region_in_both_languages(
    fleet: FleetServer, browser: object, tmp_path: Path
) -> None:
    context = logged_in_context(browser, fleet, "figures-viewer", "viewer",
                                viewport={"width": 1400, "height": 900})  # fmt: skip
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{fleet.url}/ui/evaluations?lang=zh")
    page.wait_for_selector("#figures")
    assert "政务服务指标" in page.locator("#figures h2").inner_text()
    totals = page.locator("#figure-totals")
    # 6 citizens' ratings (one 差评 by the ticket) of 10 cases; the default is not one.
    assert totals.locator('[data-figure="active_evaluation_rate"] b').inner_text() == "60.0%"
    assert totals.locator('[data-figure="follow_up_rate"] b').inner_text() == "100.0%"
    # One of two township centres has a 24-hour kiosk in its region.
    assert totals.locator('[data-figure="kiosk_coverage"] b').inner_text() == "50.0%"
    town = page.locator('#figure-rows tr[data-group="township_centre"]')
    assert "乡镇便民服务中心" in town.inner_text()
    assert town.locator('[data-figure="item_target_rate"]').inner_text() == "50.0%"
    # Per outlet, the system's default ratings apart from the citizens' ones.
    per_outlet = page.locator("#evaluation-rows")
    assert per_outlet.locator('th[data-col="default_evaluations"]').inner_text() == "默认评价"
    for outlet in ("town-a", ""):  # the outlet and the all-outlets row
        row = per_outlet.locator(f'tr[data-outlet="{outlet}"]')
        assert row.locator('[data-col="default_evaluations"]').inner_text() == "1"
    page.screenshot(path=str(tmp_path / "figures-kind-zh.png"), full_page=True)

    page.click('#figures a[data-by="region"]')
    page.wait_for_selector('#figure-rows tr[data-group="410522"]')
    region = page.locator('#figure-rows tr[data-group="410523"]')
    assert region.locator('[data-figure="kiosk_coverage"]').inner_text() == "0.0%"

    page.goto(f"{fleet.url}/ui/evaluations?lang=en&by=kind&days=7")
    page.wait_for_selector("#figures")
    assert "Policy figures" in page.locator("#figures h2").inner_text()
    assert "Township centre" in page.locator("#figure-rows").inner_text()
    assert page.locator('#figures a.on[data-days="7"]').count() == 2
    default_head = page.locator('#evaluation-rows th[data-col="default_evaluations"]')
    assert default_head.inner_text() == "Default ratings"
    page.screenshot(path=str(tmp_path / "figures-kind-en.png"), full_page=True)
    assert errors == []
    context.close()


def test_a_county_operator_sees_the_county_figures_only(
    fleet: FleetServer, browser: object
) -> None:
    context = logged_in_context(browser, fleet, "county-figures", "operator",
                                regions=("410523",))  # fmt: skip
    page = context.new_page()
    page.goto(f"{fleet.url}/ui/evaluations?by=outlet")
    page.wait_for_selector('#figure-rows tr[data-group="town-b"]')
    rows = page.locator("#figure-rows tr[data-group]")
    assert [rows.nth(i).get_attribute("data-group") for i in range(rows.count())] == ["town-b"]
    # The other county's kiosk and ratings count for nothing here.
    totals = page.locator("#figure-totals")
    assert totals.locator('[data-figure="kiosk_coverage"] b').inner_text() == "0.0%"
    assert totals.locator('[data-figure="active_evaluation_rate"] b').inner_text() == "-"
    assert "town-a" not in page.content()
    context.close()
