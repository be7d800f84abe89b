"""Operator changes beyond users and certificates land in the audit log (docs/security.md):
a dead-letter replay, a catalogue import, a rectification follow-up, an alert ack and
silence — each with the operator's name, committed with the change, and without PII."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fleet_server.health.tables import Alert
from fleet_server.models import DeadLetter, Evaluation, InboxEntry, Rectification
from fleet_server.security import Role
from govedge_testbed.upstream import catalogue_rows
from tests.security.api_harness import Api, running_api
from tests.server.txkit import ID_NUMBER, submission


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path, mqtt_url="mqtt://127.0.0.1:1") as harness:
        yield harness


def _audit(api: Api, action: str) -> list[dict[str, Any]]:
    response = api.client.get(f"/api/v1/audit?action={action}", headers=api.as_role(Role.ADMIN))
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()
    return rows


def _seed(api: Api) -> tuple[int, int, int]:
    now = datetime.now(UTC)
    with api.session() as session, session.begin():
        entry = InboxEntry(
            tx_id="tx-audit-1", outlet_id="o-1", idempotency_key="o-1:tx-audit-1",
            tx_kind="submission",
            body=submission(), created_ts=0, received_at=now, state="dead",
            attempts=3, next_due_at=None, result_pending=False,
        )  # fmt: skip
        session.add(entry)
        session.flush()
        dead = DeadLetter(
            inbox_id=entry.id, tx_id=entry.tx_id, outlet_id="o-1", tx_kind="submission",
            target=None, reason="no_route", detail=None, status_code=None, attempts=3,
            created_at=now,
        )  # fmt: skip
        evaluation = Evaluation(
            tx_id="tx-audit-2", outlet_id="o-1", window="W1", case_number=None, level_code=5,
            stars=1, channel="4", is_bad=True, is_default=False, real_name=True,
            evaluated_at=now,
        )  # fmt: skip
        session.add_all([dead, evaluation])
        session.flush()
        ticket = Rectification(
            evaluation_id=evaluation.id, outlet_id="o-1", window="W1", opened_at=now,
            deadline_at=now + timedelta(days=15), status="open",
        )  # fmt: skip
        alert = Alert(
            rule="outlet_offline", outlet_id="o-1", device_id="", severity="warning",
            state="open", summary="outlet o-1 offline", value=None, detail={},
            opened_at=now, updated_at=now,
        )  # fmt: skip
        session.add_all([ticket, alert])
        session.flush()
        return dead.id, ticket.id, alert.id


def test_each_operator_change_is_audited(api: Api) -> None:
    dead_id, ticket_id, alert_id = _seed(api)
    operator = api.as_role(Role.OPERATOR)

    assert api.client.post(f"/api/v1/dead-letters/{dead_id}/replay", headers=operator).is_success
    assert api.client.post(
        "/api/v1/catalogue/import?format=json",
        content=json.dumps(catalogue_rows()),
        headers=operator | {"Content-Type": "application/json"},
    ).is_success
    follow_up = {"action": "回访", "note": f"called {ID_NUMBER}", "by": "clerk-1"}
    assert api.client.post(
        f"/api/v1/rectifications/{ticket_id}/follow-up", json=follow_up, headers=operator
    ).is_success
    assert api.client.post(f"/api/v1/alerts/{alert_id}/ack", headers=operator).is_success
    assert api.client.post(
        f"/api/v1/alerts/{alert_id}/silence?minutes=30", headers=operator
    ).is_success

    expected = {
        "dead_letter.replay": f"dead_letter:{dead_id}",
        "catalogue.import": "catalogue",
        "rectification.follow_up": f"rectification:{ticket_id}",
        "alert.ack": f"alert:{alert_id}",
        "alert.silence": f"alert:{alert_id}",
    }
    for action, target in expected.items():
        rows = _audit(api, action)
        assert len(rows) == 1, (action, rows)
        assert rows[0]["actor"] == "u-operator"
        assert rows[0]["target"] == target
        assert ID_NUMBER not in json.dumps(rows[0], ensure_ascii=False)
    assert _audit(api, "catalogue.import")[0]["after"]["created"] == len(catalogue_rows())


def test_a_refused_change_leaves_no_audit_row(api: Api) -> None:
    dead_id, _ticket, _alert = _seed(api)
    operator = api.as_role(Role.OPERATOR)
    assert api.client.post(f"/api/v1/dead-letters/{dead_id}/replay", headers=operator).is_success
    again = api.client.post(f"/api/v1/dead-letters/{dead_id}/replay", headers=operator)
    assert again.status_code == 409
    assert len(_audit(api, "dead_letter.replay")) == 1
