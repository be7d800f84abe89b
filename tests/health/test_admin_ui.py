"""The outlets list, the registry import and the admins' pages in a real headless
Chromium, logged in through the login form: an admin imports a file with a bad row and
reads the row error (nothing imported), then a good one; searches, sorts and pages the
list; adds a user with a typed password who then logs in; mints an enrollment token and
sees it listed; reads the audit log. An operator sees no admin entries and gets 403
there; a viewer may export but is offered no import. zh-CN and English."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet_server.web.i18n import STRINGS
from govedge_testbed import Mosquitto
from tests.health.conftest import PASSWORD, logged_in_context, login_form
from tests.server.helpers import FleetServer, started_fleet_server

HEADER = "id,name,kind,region,lat,lon,address,opening_hours,service_items\n"
ADMIN_NAV = ("/ui/audit", "/ui/users", "/ui/enrollment")


def _rows(n: int) -> str:
    return "".join(
        f"ui-{i:03d},网点{i:03d},village_station,4104{i % 3:02d},33.{i:03d},113.{i:03d},,24h,\n"
        for i in range(n)
    )


@pytest.fixture
def fleet(broker: Mosquitto, tmp_path: Path) -> Iterator[FleetServer]:
    with started_fleet_server(broker.url, tmp_path) as server:
        yield server


def _nav(page: Any) -> list[str]:
    return [a.get_attribute("href") for a in page.locator("header nav a").all()]


def test_an_admin_imports_the_registry_and_works_the_list(
    fleet: FleetServer, browser: Any, tmp_path: Path
) -> None:
    context = logged_in_context(browser, fleet, "ui-admin", "admin")
    page = context.new_page()
    page.goto(f"{fleet.url}/ui/outlets?lang=en")
    assert all(href in _nav(page) for href in ADMIN_NAV)
    page.wait_for_selector("#rg-shown:text('0-0 of 0')")
    # A file whose third row has latitude without longitude: the row error, nothing stored.
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + _rows(2) + "ui-bad,坏行,kiosk,410402,33.1,,,,\n", encoding="utf-8")
    page.set_input_files("#rg-file", str(bad))
    page.click("#rg-import")
    error = page.wait_for_selector('#rg-errors tr[data-row="3"]')
    assert error.get_attribute("data-field") == "row"
    assert "lat and lon go together" in error.inner_text()
    assert "Nothing was imported" in page.locator("#rg-refused").inner_text()
    assert page.locator("#rg-shown").inner_text() == "0-0 of 0"
    # The good file: 120 outlets, three pages of 50.
    good = tmp_path / "good.csv"
    good.write_text(HEADER + _rows(120), encoding="utf-8")
    page.set_input_files("#rg-file", str(good))
    page.click("#rg-import")
    page.wait_for_selector("#rg-imported:text('120 created')")
    page.wait_for_selector("#rg-shown:text('1-50 of 120')")
    page.click("#rg-next")
    page.wait_for_selector("#rg-shown:text('51-100 of 120')")
    assert page.locator("#rg-rows tr").first.get_attribute("data-outlet") == "ui-050"
    # Sorted by name, descending: the last outlet first.
    page.click('[data-sort="name"]')
    page.click('[data-sort="name"]')
    page.wait_for_selector('#rg-rows tr:first-child[data-outlet="ui-119"]')
    assert page.locator("#rg-shown").inner_text() == "1-50 of 120"
    page.fill("#rg-q", "网点00")
    page.wait_for_selector("#rg-shown:text('1-10 of 10')")
    page.fill("#rg-q", "ui-1")
    page.wait_for_selector("#rg-shown:text('1-20 of 20')")
    assert page.locator("#rg-rows tr").first.get_attribute("data-outlet") == "ui-119"
    page.screenshot(path=str(tmp_path / "outlets-en.png"), full_page=True)
    # Live: an import elsewhere (the API) shows up without a reload.
    row = HEADER + "ui-1xx,网点新增,kiosk,410401,,,,,\n"
    answer = fleet.http.post("/api/v1/outlets/import", content=row.encode(),
                             params={"format": "csv"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    page.wait_for_selector("#rg-shown:text('1-21 of 21')")
    # The map places the imported outlets.
    page.goto(f"{fleet.url}/ui/map")
    page.wait_for_selector('circle[data-outlet="ui-007"]')
    # zh-CN is the default. The first page comes inside the page itself: shown with the
    # list API refused to the browser (one round trip fewer at 10,000 outlets).
    asked: list[str] = []

    def refuse(route: Any) -> None:
        asked.append(route.request.url)
        route.abort()

    page.route("**/api/v1/outlets?*", refuse)
    page.goto(f"{fleet.url}/ui/outlets?lang=zh")
    page.wait_for_selector("#rg-shown:text('第 1-50 条,共 121 条')")
    assert page.locator("#rg-rows tr").first.get_attribute("data-outlet") == "ui-000"
    assert asked == []
    page.unroute("**/api/v1/outlets?*")
    assert "网点名录导入导出" in page.locator("#registry h2").inner_text()
    page.screenshot(path=str(tmp_path / "outlets-zh.png"), full_page=True)
    page.close()
    context.close()


def test_an_admin_adds_a_user_who_logs_in_and_mints_a_token(
    fleet: FleetServer, browser: Any, tmp_path: Path
) -> None:
    context = logged_in_context(browser, fleet, "ui-admin2", "admin")
    page = context.new_page()
    page.goto(f"{fleet.url}/ui/users?lang=en")
    page.wait_for_selector('tr[data-user="ui-admin2"]')
    # A weak password: refused with the reason, nobody made.
    page.fill("#us-name", "county-clerk")
    page.select_option("#us-role", "operator")
    page.fill("#us-regions", "4104")
    page.fill("#us-password", "short")
    page.click("#us-create")
    assert "at least 10" in page.wait_for_selector("#us-refused").inner_text()
    assert page.locator('tr[data-user="county-clerk"]').count() == 0
    page.fill("#us-password", PASSWORD)
    page.click("#us-create")
    page.wait_for_selector("#us-created")
    assert page.locator("#us-token").inner_text().startswith("gvt_")
    row = page.wait_for_selector('tr[data-user="county-clerk"]')
    assert "4104" in row.inner_text()
    page.screenshot(path=str(tmp_path / "users-en.png"), full_page=True)
    # The new user logs in through the form and, an operator, sees no admin entries.
    other = browser.new_context()
    clerk = other.new_page()
    clerk.goto(f"{fleet.url}/")
    login_form(clerk, "county-clerk", PASSWORD)
    clerk.wait_for_url("**/ui/overview")
    assert not any(href in _nav(clerk) for href in ADMIN_NAV)
    # A reset on the page: a generated password, shown once, works; the old one not.
    page.click('tr[data-user="county-clerk"] button[data-us="reset"]')
    new_password = page.wait_for_selector("#us-generated").inner_text()
    assert len(new_password) >= 10
    clerk.goto(f"{fleet.url}/")  # the reset ended the clerk's session: the login form
    clerk.wait_for_url("**/ui/login?next=*")
    login_form(clerk, "county-clerk", PASSWORD)
    assert STRINGS["login_wrong"]["zh"] in clerk.wait_for_selector("#login-error").inner_text()
    login_form(clerk, "county-clerk", new_password)
    clerk.wait_for_url("**/ui/overview")
    other.close()
    # Mint a token: shown once, then listed as unused.
    page.goto(f"{fleet.url}/ui/enrollment?lang=en")
    page.fill("#en-outlet", "410402-0099")
    page.click("#en-mint")
    assert page.wait_for_selector("#en-token").inner_text().startswith("gve_")
    token_row = page.wait_for_selector('tr[data-token-outlet="410402-0099"]')
    assert "unused" in token_row.inner_text()
    page.screenshot(path=str(tmp_path / "enrollment-en.png"), full_page=True)
    # The audit log has both, newest first, filterable.
    page.goto(f"{fleet.url}/ui/audit?lang=zh")
    page.wait_for_selector('tr[data-action="enrollment.token_create"]')
    page.fill("#au-action", "user.*")
    page.click("#au-form button[type=submit]")
    page.wait_for_selector('tr[data-action="enrollment.token_create"]', state="detached")
    created = page.locator('tr[data-action="user.create"]', has_text="user:county-clerk")
    assert created.count() == 1
    assert "ui-admin2" in created.inner_text()
    assert "审计日志" in page.locator("header nav").inner_text()
    page.screenshot(path=str(tmp_path / "audit-zh.png"), full_page=True)
    page.close()
    context.close()


def test_an_operator_and_a_viewer_see_no_admin_pages(fleet: FleetServer, browser: Any) -> None:
    body = (HEADER + _rows(6)).encode()
    answer = fleet.http.post("/api/v1/outlets/import", content=body, params={"format": "csv"})
    assert answer.status_code == 200, answer.text
    # A county operator (410401: ui-001 and ui-004) and a whole-fleet viewer.
    for name, role, regions, shown in (
        ("ui-operator", "operator", ("410401",), "1-2 of 2"),
        ("ui-viewer", "viewer", (), "1-6 of 6"),
    ):
        context = logged_in_context(browser, fleet, name, role, regions=regions)
        page = context.new_page()
        page.goto(f"{fleet.url}/ui/outlets?lang=en")
        page.wait_for_selector(f"#rg-shown:text('{shown}')")
        assert page.locator("#rg-scope").count() == (1 if regions else 0)
        assert "/ui/outlets" in _nav(page)
        assert not any(href in _nav(page) for href in ADMIN_NAV)
        # Export for both; import only for the operator.
        assert page.locator("#rg-export-csv").count() == 1
        assert page.locator("#rg-import").count() == (1 if role == "operator" else 0)
        assert page.locator("#rg-read-only").count() == (0 if role == "operator" else 1)
        for path in ADMIN_NAV:
            answer = page.goto(f"{fleet.url}{path}")
            assert answer is not None
            assert answer.status == 403, path
        page.close()
        context.close()
