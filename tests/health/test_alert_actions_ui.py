"""Alert actions on the overview follow the role: a viewer sees the open alert without
ack button, an operator acks it from the page, and an action the server
refuses (here: the operator's sessions were revoked with the CLI) says why."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.health.conftest import logged_in_context
from tests.server.helpers import FleetServer


@pytest.fixture
def fleet(seeded_fleet: FleetServer) -> FleetServer:
    return seeded_fleet


def _open_alert(database_url: str) -> int:
    from fleet_server.db import make_engine, make_sessionmaker
    from fleet_server.health.tables import Alert

    engine = make_engine(database_url)
    now = datetime.now(UTC)
    try:
        with make_sessionmaker(engine).begin() as session:
            alert = Alert(
                rule="outlet_offline", outlet_id="ui-alert-01", device_id="", severity="critical",
                state="open", summary="outlet ui-alert-01 offline for 900 s", value=900.0,
                detail={}, opened_at=now, updated_at=now,
            )  # fmt: skip
            session.add(alert)
            session.flush()
            return alert.id
    finally:
        engine.dispose()


def test_viewer_sees_no_actions_operator_acks_and_a_refusal_says_why(
    fleet: FleetServer, browser: Any, tmp_path: Path
) -> None:
    alert_id = _open_alert(fleet.database_url)
    row = f'tr:has(button[data-id="{alert_id}"])'

    viewer = logged_in_context(browser, fleet, "vic", "viewer").new_page()
    viewer.goto(f"{fleet.url}/ui/overview?lang=en")
    viewer.wait_for_selector("text=outlet ui-alert-01 offline for 900 s")
    assert viewer.locator("button[data-act]").count() == 0
    assert viewer.locator("#user").inner_text().strip() == "vic"
    viewer.close()

    operator = logged_in_context(browser, fleet, "olga", "operator").new_page()
    operator.goto(f"{fleet.url}/ui/overview?lang=en")
    operator.click(f'{row} button[data-act="ack"]')
    operator.wait_for_selector(f'{row} td:text-is("olga")')  # acked by, pushed over SSE

    # The operator's sessions end (an admin's revoke); the page's next action is refused.
    revoke = subprocess.run(
        [str(Path(sys.executable).parent / "fleet-server"), "users", "sessions", "olga",
         "--revoke", "--database-url", fleet.database_url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert revoke.returncode == 0, revoke.stderr
    assert "1 web sessions of olga ended" in revoke.stdout
    operator.click(f'{row} button[data-act="ack"]')
    note = operator.wait_for_selector("#action-error")
    assert note is not None
    assert note.inner_text() == "Refused: the session expired; log in again at /ui/login"
    operator.screenshot(path=str(tmp_path / "alert-refused.png"), full_page=True)
    operator.close()
