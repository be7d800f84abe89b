"""Fleet-wide alerts (filed under the pseudo-outlet ``_fleet``, which has no page) in a
real headless Chromium, logged in through the login form: on the alerts page and the
overview a paused campaign's alert links to its campaign, an upstream breaker's names the
fleet without a link, and none links to the outlet page that would answer 404."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.health.conftest import logged_in_context
from tests.server.helpers import FleetServer

CAMPAIGN = 7


def _seed(database_url: str) -> None:
    from fleet_server.db import make_engine, make_sessionmaker
    from fleet_server.health.tables import Alert

    now = datetime.now(UTC)
    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine).begin() as session:
            session.add_all([
                Alert(rule="campaign_paused", outlet_id="_fleet", device_id=f"campaign:{CAMPAIGN}",
                      severity="warning", state="open", summary=f"campaign {CAMPAIGN} paused",
                      value=None, detail={"campaign_id": CAMPAIGN}, opened_at=now, updated_at=now),
                Alert(rule="upstream_breaker_open", outlet_id="_fleet", device_id="target:zwfw",
                      severity="critical", state="open", summary="upstream target zwfw: open",
                      value=None, detail={"target": "zwfw"}, opened_at=now, updated_at=now),
            ])  # fmt: skip
    finally:
        engine.dispose()


def _subjects(page: Any, row: str) -> dict[str, Any]:
    """The subject cell (the outlet column) of each alert row, by the row's rule name."""
    page.wait_for_selector(f"{row} [data-fleet-alert]")
    return {
        tr.locator("td").first.inner_text(): tr.locator("td").nth(1)
        for tr in page.locator(row).all()
    }


def test_fleet_wide_alerts_link_to_what_they_are_about(
    seeded_fleet: FleetServer, browser: Any
) -> None:
    fleet = seeded_fleet
    _seed(fleet.database_url)
    # What the links used to point at: no outlet "_fleet", no page.
    assert fleet.http.get("/api/v1/outlets/_fleet").status_code == 404
    context = logged_in_context(browser, fleet, "fleet-alerts-admin", "admin")
    page = context.new_page()
    for path in ("/ui/alerts?lang=en", "/ui/overview?lang=en"):
        page.goto(f"{fleet.url}{path}")
        cells = _subjects(page, "tr[data-alert]")
        assert set(cells) == {"Campaign paused", "Upstream breaker open"}, path
        campaign = cells["Campaign paused"].locator("a")
        assert campaign.get_attribute("href") == f"/ui/campaigns/{CAMPAIGN}", path
        assert campaign.inner_text() == f"Campaign {CAMPAIGN}"
        breaker = cells["Upstream breaker open"]
        assert breaker.locator("a").count() == 0, path
        assert breaker.inner_text() == "Fleet-wide"
        assert page.locator('a[href^="/ui/outlets/_fleet"]').count() == 0, path
    # The campaign link opens the campaign's page.
    page.locator(f'a[href="/ui/campaigns/{CAMPAIGN}"]').first.click()
    page.wait_for_url(f"**/ui/campaigns/{CAMPAIGN}")
    assert page.locator("header nav a.on").inner_text() == "Updates"
    # And in Chinese.
    page.goto(f"{fleet.url}/ui/alerts?lang=zh")
    cells = _subjects(page, "tr[data-alert]")
    assert cells["升级任务暂停"].inner_text() == f"升级任务 {CAMPAIGN}"
    assert cells["上游熔断"].inner_text() == "全网"
    page.close()
    context.close()
