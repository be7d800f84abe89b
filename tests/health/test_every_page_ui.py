"""Every page of the operators' UI in a real headless Chromium, in zh-CN and in English:
the login form (no session), then, logged in through it as an admin, every page of the
navigation, an outlet, an update campaign and a playbook run. Each renders without a
script error, with the title, the navigation and a string of its own body in that
language, and leaves a screenshot per page and language in the test artifacts
(``test-artifacts/screenshots/every-page/``, or under ``$GOVEDGE_TEST_ARTIFACTS``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from fleet_server.campaigns.tables import Campaign, CampaignOutlet
from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.playbooks.tables import PlaybookHost, PlaybookRun
from fleet_server.web.i18n import STRINGS
from govedge_testbed import Mosquitto
from tests.health.conftest import logged_in_context, screenshots_dir
from tests.server.helpers import FleetServer, started_fleet_server

OUTLET = "410402-0001"
REGISTRY = (
    "id,name,kind,region,lat,lon,address,opening_hours,service_items\n"
    f"{OUTLET},东区便民服务中心,street_centre,410402,33.70,113.30,,24h,\n"
)
# Every page: its path ({campaign} and {run} filled in), the navigation entry marked as
# the current one, and a string key whose text the page's body shows in its language.
PAGES = (
    ("overview", "nav_overview", "by_region"),
    ("outlets", "nav_outlets", "rg_registry"),
    ("map", "nav_map", "nav_map"),
    (f"outlets/{OUTLET}", None, "tx_waiting"),
    ("alerts", "nav_alerts", "r_upstream_breaker_open"),
    ("evaluations", "nav_evaluations", "active_rate"),
    ("rectifications", "nav_rectifications", "rv_overdue"),
    ("transactions", "nav_transactions", "ts_delivered"),
    ("dead-letters", "nav_dead_letters", "dl_include_replayed"),
    ("config", "nav_config", "out_of_sync"),
    ("campaigns", "nav_campaigns", "cp_release"),
    ("campaigns/{campaign}", "nav_campaigns", "cp_concurrency"),
    ("playbook-runs", "nav_playbook_runs", "pb_start"),
    ("playbook-runs/{run}", "nav_playbook_runs", "pb_held"),
    ("audit", "nav_audit", "au_action"),
    ("users", "nav_users", "us_regions"),
    ("enrollment", "nav_enrollment", "en_mint"),
)
NAV_KEYS = list(dict.fromkeys(key for _, key, _ in PAGES if key is not None))
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


def _campaign_and_run(fleet: FleetServer) -> dict[str, str]:
    """A paused campaign and a finished check-mode run of the outlet, written as the
    server would have (the pages read them through the API)."""
    now = datetime.now(UTC)
    engine = make_engine(fleet.database_url)
    try:
        with make_sessionmaker(engine)() as session, session.begin():
            campaign = Campaign(
                name="春季修复", release="9.9.9", target={"outlets": [OUTLET]}, settings={},
                waves=[1], wave_times={}, current_wave=-1, state="paused",
                state_reason=None, created_by="every-page-admin", created_at=now,
                updated_at=now, next_wave_at=None,
            )  # fmt: skip
            run = PlaybookRun(
                playbook="diagnose.yml", status="successful", check_mode=True,
                during_opening_hours=False, forks=1, target={"outlets": [OUTLET]},
                extra_vars={}, created_at=now, created_by="every-page-admin", finished_at=now,
            )  # fmt: skip
            session.add_all([campaign, run])
            session.flush()
            session.add(
                CampaignOutlet(
                    campaign_id=campaign.id, outlet_id=OUTLET, position=0, wave=0,
                    state="pending", since=now, reason=None, detail=None,
                    from_version="1.0.0", release="9.9.9", attempts=0, offered_at=None,
                    last_report_at=None,
                )
            )  # fmt: skip
            session.add(
                PlaybookHost(
                    run_id=run.id, outlet_id=OUTLET, status="ok", held_reason=None, ok=3,
                    changed=0, failed=0, unreachable=0, skipped=0,
                )
            )  # fmt: skip
            return {"campaign": str(campaign.id), "run": str(run.id)}
    finally:
        engine.dispose()


def _watch_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    page.on(
        "console",
        lambda message: (
            errors.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    return errors


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_page_renders_in_the_language_without_a_script_error(
    fleet: FleetServer, browser: Any, lang: str
) -> None:
    answer = fleet.http.post(
        "/api/v1/outlets/import", content=REGISTRY.encode(), params={"format": "csv"}
    )
    assert answer.status_code == 200, answer.text
    ids = _campaign_and_run(fleet)
    shots = screenshots_dir("every-page")
    taken: list[Path] = []
    html_lang = "zh-CN" if lang == "zh" else "en"

    # The login form, before any session: in the language the switch chose.
    anonymous = browser.new_context()
    page = anonymous.new_page()
    errors = _watch_errors(page)
    response = page.goto(f"{fleet.url}/ui/login?lang={lang}")
    assert response is not None
    assert response.status == 200
    assert page.locator("html").get_attribute("lang") == html_lang
    assert STRINGS["login_title"][lang] in page.title()
    form = page.locator("main").inner_text()
    assert STRINGS["login_user"][lang] in form
    assert STRINGS["login_password"][lang] in form
    other = "en" if lang == "zh" else "zh"
    assert STRINGS["login_user"][other] not in form
    taken.append(shots / f"login-{lang}.png")
    page.screenshot(path=str(taken[-1]), full_page=True)
    assert not errors, f"login ({lang}): {errors}"
    anonymous.close()

    context = logged_in_context(browser, fleet, "every-page-admin", "admin")
    page = context.new_page()
    errors = _watch_errors(page)
    for template, current, body_key in PAGES:
        path = template.format(**ids)
        response = page.goto(f"{fleet.url}/ui/{path}?lang={lang}")
        assert response is not None, path
        assert response.status == 200, path
        page.wait_for_load_state("networkidle")
        assert page.title() == STRINGS["title"][lang], path
        nav = [a.inner_text() for a in page.locator("header nav a").all()]
        assert nav == [STRINGS[key][lang] for key in NAV_KEYS], path
        if current is not None:
            assert page.locator("header nav a.on").inner_text() == STRINGS[current][lang], path
        # The body in the language: a string of its own, rendered by its script.
        body = page.locator("#main")
        expect(body).to_contain_text(STRINGS[body_key][lang])
        other = "en" if lang == "zh" else "zh"
        assert STRINGS[body_key][other] not in body.inner_text(), path
        assert page.locator("html").get_attribute("lang") == html_lang
        # Nothing runs off the side: every navigation entry, the language switch and the
        # log-out button sit inside the header's band, the page no wider than the window.
        assert page.evaluate(OVERFLOW) == [], path
        taken.append(shots / f"{re.sub(r'[{}]', '', template).replace('/', '_')}-{lang}.png")
        page.screenshot(path=str(taken[-1]), full_page=True)
        assert not errors, f"{path} ({lang}): {errors}"
    assert all(shot.stat().st_size > 0 for shot in taken)
    assert len(taken) == len(PAGES) + 1
    page.close()
    context.close()
