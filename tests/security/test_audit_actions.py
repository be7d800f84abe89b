"""Operator changes beyond users and certificates land in the audit log (docs/security.md):
a dead-letter replay, a catalogue import, a rectification follow-up, an alert ack and
silence — each with the operator's name, committed with the change, and without PII."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet_server.security import Role
from govedge_testbed.upstream import catalogue_rows
from tests.security.api_harness import Api, running_api, seed_actionable_rows
from tests.server.txkit import ID_NUMBER


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path, mqtt_url="mqtt://127.0.0.1:1") as harness:
        yield harness


def _audit(api: Api, action: str) -> list[dict[str, Any]]:
    response = api.client.get(f"/api/v1/audit?action={action}", headers=api.as_role(Role.ADMIN))
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()
    return rows


def test_each_operator_change_is_audited(api: Api) -> None:
    dead_id, ticket_id, alert_id = seed_actionable_rows(api)
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
        f"/api/v1/alerts/{alert_id}/silence?minutes=30&reason=maintenance", headers=operator
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
    dead_id, _ticket, _alert = seed_actionable_rows(api)
    operator = api.as_role(Role.OPERATOR)
    assert api.client.post(f"/api/v1/dead-letters/{dead_id}/replay", headers=operator).is_success
    again = api.client.post(f"/api/v1/dead-letters/{dead_id}/replay", headers=operator)
    assert again.status_code == 409
    assert len(_audit(api, "dead_letter.replay")) == 1
