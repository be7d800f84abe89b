"""Two admin-side views in a real headless Chromium with login on: the alerts page's
history (a resolved alert, hidden among the open ones, shown under "resolved" with
when it ended) and the enrollment page's certificate list with its revoke button (a
certificate issued through the real enrollment API, revoked from the page: it leaves
the list of certificates in force, and the API has it revoked)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.health.tables import Alert
from fleet_server.web.i18n import STRINGS
from govedge_testbed import Mosquitto
from tests.enrolling import enroll_outlet
from tests.health.conftest import logged_in_context, screenshots_dir
from tests.server.helpers import FleetServer, started_fleet_server

OUTLET = "410402-0007"


@pytest.fixture
def fleet(broker: Mosquitto, tmp_path: Path) -> Iterator[FleetServer]:
    # Hourly alert evaluation: the alerts the test writes stay as written.
    with started_fleet_server(broker.url, tmp_path, GOVEDGE_ALERT_EVAL_INTERVAL_S="3600") as server:
        yield server


def _alerts(database_url: str) -> tuple[int, int]:
    """(an open alert, an alert resolved an hour ago) of the outlet."""
    now = datetime.now(UTC)
    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine).begin() as session:
            still = Alert(
                rule="outlet_offline", outlet_id=OUTLET, device_id="", severity="critical",
                state="open", summary="still open: outlet offline", value=900.0, detail={},
                opened_at=now, updated_at=now,
            )  # fmt: skip
            over = Alert(
                rule="printer_paper", outlet_id=OUTLET, device_id="ticket-printer",
                severity="warning", state="resolved", summary="paper was out, refilled",
                value=None, detail={}, opened_at=now - timedelta(hours=2),
                updated_at=now - timedelta(hours=1), resolved_at=now - timedelta(hours=1),
            )  # fmt: skip
            session.add_all([still, over])
            session.flush()
            return still.id, over.id
    finally:
        engine.dispose()


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_alerts_history_holds_a_resolved_alert(
    fleet: FleetServer, browser: Any, lang: str
) -> None:
    open_id, resolved_id = _alerts(fleet.database_url)
    context = logged_in_context(browser, fleet, "history-operator", "operator")
    page = context.new_page()
    page.goto(f"{fleet.url}/ui/alerts?lang={lang}")
    # The default view is the open alerts: the resolved one is not among them.
    page.wait_for_selector(f'tr[data-alert="{open_id}"]')
    assert page.locator(f'tr[data-alert="{resolved_id}"]').count() == 0
    page.select_option("#f-state", "resolved")
    row = page.wait_for_selector(f'tr[data-alert="{resolved_id}"]')
    assert row.get_attribute("data-alert-state") == "resolved"
    text = row.inner_text()
    assert STRINGS["as_resolved"][lang] in text
    assert STRINGS["r_printer_paper"][lang] in text
    assert "→" in text  # opened → resolved times
    assert row.query_selector("button") is None  # nothing to ack or silence any more
    assert page.locator(f'tr[data-alert="{open_id}"]').count() == 0
    page.select_option("#f-state", "all")
    page.wait_for_selector(f'tr[data-alert="{open_id}"]')
    assert page.locator(f'tr[data-alert="{resolved_id}"]').count() == 1
    page.screenshot(path=str(screenshots_dir("history") / f"alerts-all-{lang}.png"), full_page=True)
    context.close()


def test_an_admin_revokes_an_outlet_from_the_certificate_list(
    fleet: FleetServer, browser: Any
) -> None:
    _, issued = enroll_outlet(fleet.http.post, OUTLET)
    serial = str(issued["serial"])
    context = logged_in_context(browser, fleet, "cert-admin", "admin")
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # "revoke every certificate of …?"
    page.goto(f"{fleet.url}/ui/enrollment?lang=en")
    row = page.locator("#cert-list tr", has_text=OUTLET)
    row.wait_for()
    assert row.get_attribute("data-cert") == serial
    assert row.locator("[data-state]").get_attribute("data-state") == "valid"
    row.locator(f'button[data-revoke="{OUTLET}"]').click()
    done = page.wait_for_selector("#en-revoked")
    assert done.inner_text() == STRINGS["en_revoked"]["en"].format(n=1)
    # The list holds the certificates in force: the revoked one leaves it.
    row.wait_for(state="detached")
    page.screenshot(
        path=str(screenshots_dir("history") / "certificates-revoked-en.png"), full_page=True
    )
    context.close()
    # What the page did is what the API says: the outlet's certificate revoked.
    certs = fleet.http.get(f"/api/v1/outlets/{OUTLET}/certificates")
    assert certs.status_code == 200, certs.text
    assert [(str(c["serial"]), c["revoked_at"] is not None) for c in certs.json()] == [
        (serial, True)
    ]
