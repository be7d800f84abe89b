"""The operators' day-to-day pages in a real headless Chromium, logged in through the
login form: alerts (ack, silence with a reason, a rule override refused next to its
field), dead letters (replay), transactions, 好差评 rectifications (a follow-up), what a
viewer and a county operator see, and the English switch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.health.conftest import logged_in_context
from tests.server.helpers import FleetServer
from tests.server.txkit import submission

INSIDE, OUTSIDE = "410402-0001", "420101-0001"
REGIONS = {INSIDE: "410402", OUTSIDE: "420101"}
# The applicant of every seeded transaction (tests.server.txkit): never on a page.
APPLICANT = "张三丰"


@dataclass(frozen=True)
class Seeded:
    alert: int
    dead_letter: int
    rectification: int
    overdue_rectification: int


@pytest.fixture
def fleet(seeded_fleet: FleetServer) -> FleetServer:
    return seeded_fleet


def _seed(database_url: str) -> dict[str, Seeded]:
    """Per outlet: a profile, an open alert, a dead-lettered transaction, a rectification
    due in 15 days and one overdue (the inside outlet's only)."""
    from fleet_server.db import make_engine, make_sessionmaker
    from fleet_server.health.tables import Alert, OutletProfile
    from fleet_server.models import DeadLetter, Evaluation, InboxEntry, Outlet, Rectification
    from fleet_server.piivault import open_vault, use_vault
    from fleet_server.transactions.identity import upstream_idempotency_key

    # The server's sealing keys (inherited through GOVEDGE_PII_KEY_DIR, tests/conftest.py).
    use_vault(open_vault(Path(os.environ["GOVEDGE_PII_KEY_DIR"])))
    engine = make_engine(database_url)
    now = datetime.now(UTC)
    seeded = {}
    try:
        with make_sessionmaker(engine).begin() as session:
            for outlet_id, region in REGIONS.items():
                session.add(Outlet(id=outlet_id, display_name=outlet_id, created_at=now))
                session.add(
                    OutletProfile(
                        outlet_id=outlet_id, name=f"网点 {outlet_id}", kind="street_centre",
                        region_code=region, service_items=[], tags=[],
                    )
                )  # fmt: skip
                session.flush()
                alert = Alert(
                    rule="outlet_offline", outlet_id=outlet_id, device_id="",
                    severity="critical" if outlet_id == INSIDE else "warning", state="open",
                    summary=f"outlet {outlet_id} offline for 900 s", value=900.0, detail={},
                    opened_at=now, updated_at=now,
                )  # fmt: skip
                tx = f"tx-{outlet_id}"
                entry = InboxEntry(
                    tx_id=tx, outlet_id=outlet_id,
                    idempotency_key=upstream_idempotency_key(outlet_id, tx),
                    tx_kind="submission", body=submission(region=region), created_ts=0,
                    received_at=now, state="dead", attempts=3, next_due_at=None,
                    result_pending=False,
                )  # fmt: skip
                session.add_all([alert, entry])
                session.flush()
                dead = DeadLetter(
                    inbox_id=entry.id, tx_id=tx, outlet_id=outlet_id, tx_kind="submission",
                    target=None, reason="no_route", detail=None, status_code=None, attempts=3,
                    created_at=now,
                )  # fmt: skip
                tickets = []
                for n, deadline in enumerate((now + timedelta(days=15), now - timedelta(days=1))):
                    evaluation = Evaluation(
                        tx_id=f"ev-{outlet_id}-{n}", outlet_id=outlet_id, window=f"W{n + 1}",
                        case_number=None, level_code=5, stars=1, channel="4", is_bad=True,
                        is_default=False, real_name=True, evaluated_at=now,
                    )  # fmt: skip
                    session.add(evaluation)
                    session.flush()
                    ticket = Rectification(
                        evaluation_id=evaluation.id, outlet_id=outlet_id, window=f"W{n + 1}",
                        opened_at=now - timedelta(days=20), deadline_at=deadline, status="open",
                    )  # fmt: skip
                    session.add(ticket)
                    tickets.append(ticket)
                session.add(dead)
                session.flush()
                seeded[outlet_id] = Seeded(alert.id, dead.id, tickets[0].id, tickets[1].id)
        return seeded
    finally:
        engine.dispose()


def _page(browser: Any, fleet: FleetServer, name: str, role: str, **kw: Any) -> Any:
    context = logged_in_context(
        browser, fleet, name, role, viewport={"width": 1400, "height": 900}, **kw
    )
    return context.new_page()


def test_an_operator_acks_and_silences_with_a_reason_and_edits_a_rule(
    fleet: FleetServer, browser: Any, tmp_path: Path
) -> None:
    seeded = _seed(fleet.database_url)[INSIDE]
    row = f'tr[data-alert="{seeded.alert}"]'
    page = _page(browser, fleet, "olga", "operator")
    page.goto(f"{fleet.url}/ui/alerts?lang=en")
    page.wait_for_selector(f'{row}[data-alert-state="open"]')
    # Filters: critical only leaves the inside outlet's alert.
    page.select_option("#f-severity", "critical")
    page.wait_for_function(
        f"document.querySelectorAll('#alerts-table tr[data-alert]').length === 1"
        f" && document.querySelector('{row}') !== null"
    )

    page.click(f'{row} button[data-alert-act="ack"]')
    page.wait_for_selector(f'{row}[data-alert-state="acked"] td:text-is("olga")')

    # Silence: without a reason it is not sent; with one, the row says who and why.
    page.click(f'{row} button[data-alert-act="silence"]')
    page.click("#silence-submit")
    assert page.inner_text('#silence-form .field-error[data-for="reason"]') == "Say why (required)"
    page.fill("#silence-reason", "county power cut, the outlet is closed")
    page.select_option("#silence-minutes", "1440")
    page.click("#silence-submit")
    page.wait_for_selector(f'{row}[data-alert-state="silenced"]')
    assert "county power cut, the outlet is closed" in page.inner_text(row)
    alert = fleet.get(f"/api/v1/alerts/{seeded.alert}")
    assert alert["silenced_by"] == "olga"
    assert alert["silence_reason"] == "county power cut, the outlet is closed"
    assert datetime.fromisoformat(alert["silenced_until"]) > datetime.now(UTC) + timedelta(hours=23)

    # A rule override the server refuses: the reason sits next to the field.
    page.select_option("#rf-scope", "region")
    page.fill("#rf-scope-value", "4104")
    page.select_option("#rf-rule", "outlet_offline")
    page.fill('#rf-params [data-param="after_s"]', "-5")
    page.click("#rf-save")
    error = page.wait_for_selector(
        '#rule-form .field-error[data-for="after_s"]:has-text("negative")'
    )
    assert error is not None
    assert error.inner_text() == "after_s: must not be negative"
    assert fleet.get("/api/v1/alert-rules")["overrides"] == []  # nothing stored
    page.fill('#rf-params [data-param="after_s"]', "300")
    page.click("#rf-save")
    page.wait_for_selector('#overrides-table tr[data-override] td:has-text("4104")')
    [override] = fleet.get("/api/v1/alert-rules")["overrides"]
    assert (override["scope_value"], override["params"]) == ("4104", {"after_s": 300})
    page.screenshot(path=str(tmp_path / "alerts.png"), full_page=True)
    page.close()


def test_a_viewer_sees_no_actions_and_the_page_follows_changes_live(
    fleet: FleetServer, browser: Any
) -> None:
    seeded = _seed(fleet.database_url)[INSIDE]
    page = _page(browser, fleet, "vic", "viewer")
    page.goto(f"{fleet.url}/ui/alerts?lang=en")
    row = page.wait_for_selector(f'tr[data-alert="{seeded.alert}"][data-alert-state="open"]')
    assert row is not None
    assert page.locator("button[data-alert-act]").count() == 0
    assert page.locator("#rule-form, #silence-form").count() == 0
    assert page.inner_text("#read-only") == "Read-only: your role may look but not act"
    # Someone else acknowledges: the viewer's page shows it without a reload.
    fleet.http.post(f"/api/v1/alerts/{seeded.alert}/ack").raise_for_status()
    page.wait_for_selector(f'tr[data-alert="{seeded.alert}"][data-alert-state="acked"]')

    page.goto(f"{fleet.url}/ui/dead-letters")
    page.click(f'tr[data-dead-letter="{seeded.dead_letter}"] button[data-dl-show]')
    page.wait_for_selector("#dl-applicant")
    assert page.locator("#dl-replay").count() == 0

    page.goto(f"{fleet.url}/ui/rectifications")
    page.click(f'tr[data-rectification="{seeded.rectification}"] button[data-rect-show]')
    page.wait_for_selector("#rect-detail:not([hidden])")
    assert page.locator("#follow-up-form").count() == 0
    page.close()


def test_an_operator_replays_a_dead_letter_and_it_leaves_the_list(
    fleet: FleetServer, browser: Any
) -> None:
    seeded = _seed(fleet.database_url)[INSIDE]
    row = f'tr[data-dead-letter="{seeded.dead_letter}"]'
    page = _page(browser, fleet, "olga", "operator")
    page.goto(f"{fleet.url}/ui/dead-letters?lang=en")
    page.click(f"{row} button[data-dl-show]")
    applicant = page.inner_text("#dl-applicant")
    assert APPLICANT not in applicant  # masked, as the API masks it
    assert applicant.startswith("张")
    assert page.inner_text("#dl-tx-state") == "dead"
    page.click("#dl-replay")
    result = page.wait_for_selector("#replay-result.ok")
    assert result is not None
    assert result.inner_text() == (
        f"Dead letter {seeded.dead_letter} (transaction tx-{INSIDE}) was replayed"
    )
    page.wait_for_selector(row, state="detached")
    # The detail stays, now pending: it is read again after the list is drawn.
    page.wait_for_function(
        "document.querySelector('#dl-tx-state')?.textContent === 'pending'", timeout=20_000
    )
    assert APPLICANT not in page.content()

    # The transaction's own page: back to pending, no body shown.
    page.goto(f"{fleet.url}/ui/transactions?lang=en")
    page.select_option("#f-state", "pending")
    # The filtered list arrives after the select: the other case (still dead) leaves it.
    page.wait_for_selector(f'tr[data-tx="tx-{OUTSIDE}"]', state="detached")
    page.click(f'tr[data-tx="tx-{INSIDE}"] button[data-tx-show]')
    assert page.wait_for_selector("#tx-state:text-is('pending')") is not None
    assert page.locator(f'tr[data-tx="tx-{OUTSIDE}"]').count() == 0  # still dead
    assert APPLICANT not in page.content()
    page.close()


def test_an_operator_records_a_follow_up(fleet: FleetServer, browser: Any, tmp_path: Path) -> None:
    seeded = _seed(fleet.database_url)[INSIDE]
    page = _page(browser, fleet, "olga", "operator")
    page.goto(f"{fleet.url}/ui/rectifications")  # zh-CN, the default
    page.wait_for_selector(f'tr[data-rectification="{seeded.rectification}"]')
    # The overdue view holds the overdue ticket and not the other one.
    page.check("input[name=rect-view][value=overdue]")
    page.wait_for_selector(f'tr[data-rectification="{seeded.rectification}"]', state="detached")
    assert page.locator(f'tr[data-rectification="{seeded.overdue_rectification}"]').count() == 1

    page.check("input[name=rect-view][value=open]")
    page.click(f'tr[data-rectification="{seeded.rectification}"] button[data-rect-show]')
    page.wait_for_selector("#follow-up-form")
    assert page.input_value("#fu-by") == "olga"
    # An empty note: the server's refusal, next to the field; nothing recorded.
    page.select_option("#fu-action", "回访")
    page.click("#fu-save")
    error = page.wait_for_selector('#follow-up-form .field-error[data-for="note"]:not(:empty)')
    assert error is not None
    assert "at least 1 character" in error.inner_text()
    page.fill("#fu-note", "已电话回访申请人,已解释材料要求")
    page.click("#fu-save")
    page.wait_for_selector("#rect-message:has-text('跟进已登记')")
    follow_up = page.wait_for_selector("#follow-ups tr[data-follow-up]")
    assert follow_up is not None
    assert "回访" in follow_up.inner_text()
    assert "已电话回访申请人" in follow_up.inner_text()
    [ticket] = [
        r for r in fleet.get("/api/v1/rectifications")["items"] if r["id"] == seeded.rectification
    ]
    assert [(f["action"], f["by"]) for f in ticket["follow_ups"]] == [("回访", "olga")]
    page.screenshot(path=str(tmp_path / "rectifications.png"), full_page=True)
    page.close()


def test_a_county_operator_sees_only_the_county(fleet: FleetServer, browser: Any) -> None:
    seeded = _seed(fleet.database_url)
    page = _page(browser, fleet, "county-op", "operator", regions=("4104",))
    pages = {
        "alerts": f'tr[data-alert="{seeded[INSIDE].alert}"]',
        "dead-letters": f'tr[data-dead-letter="{seeded[INSIDE].dead_letter}"]',
        "transactions": f'tr[data-tx="tx-{INSIDE}"]',
        "rectifications": f'tr[data-rectification="{seeded[INSIDE].rectification}"]',
    }
    for name, inside in pages.items():
        page.goto(f"{fleet.url}/ui/{name}?lang=en")
        page.wait_for_selector(inside)
        assert OUTSIDE not in page.inner_text("main"), name
    # The rule form offers only overrides inside the county.
    page.goto(f"{fleet.url}/ui/alerts")
    options = page.eval_on_selector_all("#rf-scope option", "els => els.map(e => e.value)")
    assert options == ["region", "outlet"]
    page.close()


def test_the_english_switch(fleet: FleetServer, browser: Any) -> None:
    _seed(fleet.database_url)
    page = _page(browser, fleet, "vic-en", "viewer")
    page.goto(f"{fleet.url}/ui/dead-letters")
    assert page.inner_text("nav a.on") == "死信"
    assert page.inner_text("main h2") == "死信"
    page.click("#lang-switch")
    page.wait_for_selector("nav a.on:text-is('Dead letters')")
    assert page.inner_text("main h2") == "Dead letters"
    nav = page.inner_text("nav")
    for label in ("Alerts", "Rectifications", "Transactions", "Dead letters"):
        assert label in nav
    page.goto(f"{fleet.url}/ui/alerts")  # the cookie keeps English
    page.wait_for_selector("#alert-filters")
    assert page.inner_text("main h2") == "Alerts"
    page.close()


def test_the_rectification_list_pages_and_follows_changes(fleet: FleetServer, browser: Any) -> None:
    seeded = _seed(fleet.database_url)[INSIDE]
    _more_tickets(fleet.database_url, INSIDE, 55)  # 2 + 2 seeded: 59 open, newest first
    oldest = f'tr[data-rectification="{seeded.rectification}"]'
    page = _page(browser, fleet, "olga", "operator")
    page.goto(f"{fleet.url}/ui/rectifications")  # zh-CN
    page.wait_for_selector("#page-range:text-is('第 1-50 条,共 59 条')")
    assert page.locator("#rect-table tr[data-rectification]").count() == 50
    assert page.locator(oldest).count() == 0  # on the last page
    assert page.locator("#prev-page").is_disabled()
    page.click("#next-page")
    page.wait_for_selector("#page-range:text-is('第 51-59 条,共 59 条')")
    assert page.locator("#rect-table tr[data-rectification]").count() == 9
    assert page.locator(oldest).count() == 1
    assert page.locator("#next-page").is_disabled()
    # Another operator closes a ticket: the page is redrawn with the new total.
    fleet.http.post(
        f"/api/v1/rectifications/{seeded.rectification}/follow-up",
        json={"action": "整改", "note": "已整改", "by": "supervisor", "closes": True},
    ).raise_for_status()
    page.wait_for_selector("#page-range:text-is('第 51-58 条,共 58 条')")
    assert page.locator(oldest).count() == 0
    # Another view starts at its first page.
    page.check("input[name=rect-view][value=closed]")
    page.wait_for_selector("#page-range:text-is('第 1-1 条,共 1 条')")
    assert page.locator(oldest).count() == 1
    page.goto(f"{fleet.url}/ui/rectifications?lang=en")
    page.wait_for_selector("#page-range:text-is('1-50 of 58')")
    page.close()


def _more_tickets(database_url: str, outlet_id: str, count: int) -> None:
    """``count`` open 差评 tickets of ``outlet_id``, opened after the seeded ones."""
    from fleet_server.db import make_engine, make_sessionmaker
    from tests.health import records

    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine).begin() as session:
            for _ in range(count):
                records.ticket(session, outlet_id, opened=datetime.now(UTC) - timedelta(days=1))
    finally:
        engine.dispose()


def _fleetctl(fleet: FleetServer, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "fleetctl"), "--server", fleet.url, "--token", token,
         *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _token_of_new_user(fleet: FleetServer, name: str, role: str, *regions: str) -> str:
    scope = [arg for region in regions for arg in ("--region", region)]
    result = subprocess.run(
        [str(Path(sys.executable).parent / "fleet-server"), "users", "add", name, "--role", role,
         *scope, "--password-stdin", "--database-url", fleet.database_url],
        input="a-long-enough-password\n", capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    return lines[lines.index(next(x for x in lines if "API token, shown only now" in x)) + 1]


def test_fleetctl_lists_rectifications_in_scope_and_records_a_follow_up(
    fleet: FleetServer,
) -> None:
    seeded = _seed(fleet.database_url)
    county = _token_of_new_user(fleet, "county-op", "operator", REGIONS[INSIDE])
    listed = _fleetctl(fleet, county, "rectifications", "list", "--status", "all", "--json")
    assert listed.returncode == 0, listed.stderr
    page = json.loads(listed.stdout)
    ids = {t["id"] for t in page["items"]}
    assert {seeded[INSIDE].rectification, seeded[INSIDE].overdue_rectification} <= ids
    assert {t["outlet_id"] for t in page["items"]} == {INSIDE}  # the county's only
    overdue = _fleetctl(fleet, county, "rectifications", "list", "--overdue", "--json")
    assert [t["id"] for t in json.loads(overdue.stdout)["items"]] == [
        seeded[INSIDE].overdue_rectification
    ]
    table = _fleetctl(fleet, county, "rectifications", "list")
    assert str(seeded[INSIDE].rectification) in table.stdout
    assert "overdue" in table.stdout

    done = _fleetctl(
        fleet, county, "rectifications", "follow-up", str(seeded[INSIDE].rectification),
        "--action", "整改", "--note", "窗口已整改", "--by", "李主任", "--closes",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"rectification {seeded[INSIDE].rectification} {INSIDE} closed" in done.stdout
    closed = json.loads(
        _fleetctl(fleet, county, "rectifications", "list", "--status", "closed", "--json").stdout
    )
    assert [t["id"] for t in closed["items"]] == [seeded[INSIDE].rectification]
    assert closed["items"][0]["follow_ups"][-1]["note"] == "窗口已整改"
    # Closed: a second follow-up is refused with the API's reason; outside the county: 404.
    again = _fleetctl(
        fleet, county, "rectifications", "follow-up", str(seeded[INSIDE].rectification),
        "--action", "反馈", "--note", "x", "--by", "李主任",
    )  # fmt: skip
    assert again.returncode == 1
    assert "closed" in again.stderr
    outside = _fleetctl(
        fleet, county, "rectifications", "follow-up", str(seeded[OUTSIDE].rectification),
        "--action", "回访", "--note", "x", "--by", "李主任",
    )  # fmt: skip
    assert outside.returncode == 1
    assert "not found" in outside.stderr
