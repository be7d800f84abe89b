"""Every page of the operators' UI in a real headless Chromium, logged in through the
login form as an admin, in zh-CN and in English: each renders without a script error,
with the title and the navigation in that language, and leaves a screenshot per page and
language in the test's directory (the artifacts kept from the run)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet_server.web.i18n import STRINGS
from govedge_testbed import Mosquitto
from tests.health.conftest import logged_in_context
from tests.server.helpers import FleetServer, started_fleet_server

OUTLET = "410402-0001"
REGISTRY = (
    "id,name,kind,region,lat,lon,address,opening_hours,service_items\n"
    f"{OUTLET},东区便民服务中心,street_centre,410402,33.70,113.30,,24h,\n"
)
# Every page, with the navigation entry that is marked as the current one.
PAGES = (
    ("overview", "nav_overview"),
    ("outlets", "nav_outlets"),
    ("map", "nav_map"),
    (f"outlets/{OUTLET}", None),
    ("alerts", "nav_alerts"),
    ("evaluations", "nav_evaluations"),
    ("rectifications", "nav_rectifications"),
    ("transactions", "nav_transactions"),
    ("dead-letters", "nav_dead_letters"),
    ("config", "nav_config"),
    ("campaigns", "nav_campaigns"),
    ("playbook-runs", "nav_playbook_runs"),
    ("audit", "nav_audit"),
    ("users", "nav_users"),
    ("enrollment", "nav_enrollment"),
)
NAV_KEYS = [key for _, key in PAGES if key is not None]
# What sticks out: header items outside the header's box, and a page wider than the window.
OVERFLOW = """() => {
  const band = document.querySelector("header").getBoundingClientRect();
  const out = [...document.querySelectorAll("header nav a, #lang-switch, #logout")]
    .filter((el) => { const r = el.getBoundingClientRect();
      return r.right > band.right + 1 || r.bottom > band.bottom + 1; })
    .map((el) => el.textContent.trim());
  if (document.documentElement.scrollWidth > window.innerWidth + 1) out.push("page width");
  return out;
}"""


@pytest.fixture
def fleet(broker: Mosquitto, tmp_path: Path) -> Iterator[FleetServer]:
    with started_fleet_server(broker.url, tmp_path) as server:
        yield server


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_page_renders_in_the_language_without_a_script_error(
    fleet: FleetServer, browser: Any, tmp_path: Path, lang: str
) -> None:
    answer = fleet.http.post(
        "/api/v1/outlets/import", content=REGISTRY.encode(), params={"format": "csv"}
    )
    assert answer.status_code == 200, answer.text
    context = logged_in_context(browser, fleet, "every-page-admin", "admin")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    page.on(
        "console",
        lambda message: (
            errors.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    shots = tmp_path / "screenshots"
    shots.mkdir()
    for path, current in PAGES:
        response = page.goto(f"{fleet.url}/ui/{path}?lang={lang}")
        assert response is not None, path
        assert response.status == 200, path
        page.wait_for_load_state("networkidle")
        assert page.title() == STRINGS["title"][lang], path
        nav = [a.inner_text() for a in page.locator("header nav a").all()]
        assert nav == [STRINGS[key][lang] for key in NAV_KEYS], path
        if current is not None:
            assert page.locator("header nav a.on").inner_text() == STRINGS[current][lang], path
        assert page.locator("#main").inner_text().strip(), f"{path}: nothing rendered"
        assert page.locator("html").get_attribute("lang") == ("zh-CN" if lang == "zh" else "en")
        # Nothing runs off the side: every navigation entry, the language switch and the
        # log-out button sit inside the header's band, the page no wider than the window.
        assert page.evaluate(OVERFLOW) == [], path
        name = path.replace("/", "_")
        page.screenshot(path=str(shots / f"{name}-{lang}.png"), full_page=True)
        assert not errors, f"{path} ({lang}): {errors}"
    assert len(list(shots.glob("*.png"))) == len(PAGES)
    page.close()
    context.close()
