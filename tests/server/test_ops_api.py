"""The API under the operators' pages, in the app with a real database and broker: the
alert list's filters and pages, silence with a required reason, alert-rule values of
the wrong kind refused per field, the transaction list by scope, filter and page.
Refusals answer 422 and change nothing (no row, no audit entry)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from fleet_server.models import AuditEntry
from fleet_server.security import Role
from govedge_testbed import Mosquitto
from tests.security.api_harness import Api, running_api
from tests.security.scope_seed import INSIDE, OUTSIDE, Rows, scoped_users, seed_two_outlets


@pytest.fixture
def api(tmp_path: Path, broker: Mosquitto) -> Iterator[Api]:
    with running_api(tmp_path, mqtt_url=broker.url) as running:
        yield running


@pytest.fixture
def rows(api: Api) -> dict[str, Rows]:
    return seed_two_outlets(api)


def _audits(api: Api) -> int:
    with api.session() as session:
        return int(session.scalar(select(func.count()).select_from(AuditEntry)) or 0)


def test_alert_filters_and_pages(api: Api, rows: dict[str, Rows]) -> None:
    viewer = api.as_role(Role.VIEWER)

    def ids(query: str) -> list[int]:
        answer = api.client.get(f"/api/v1/alerts?{query}", headers=viewer)
        assert answer.status_code == 200, answer.text
        return [a["id"] for a in answer.json()]

    both = {rows[INSIDE].alert, rows[OUTSIDE].alert}
    assert set(ids("state=all")) == both
    assert ids("region=4101") == [rows[INSIDE].alert]
    assert ids("region=42&rule=outlet_offline&severity=warning") == [rows[OUTSIDE].alert]
    assert ids("severity=critical") == []
    assert ids("state=resolved") == []
    assert ids("until=2000-01-01T00:00:00Z") == []
    assert set(ids("since=2000-01-01T00:00:00Z")) == both
    first, second = ids("limit=1"), ids("limit=1&offset=1")
    assert len(first) == len(second) == 1
    assert {*first, *second} == both
    # A scoped viewer's region filter cannot reach past the scope.
    scoped = scoped_users(api)[Role.VIEWER]
    answer = api.client.get("/api/v1/alerts?region=42", headers=scoped)
    assert answer.status_code == 200
    assert answer.json() == []
    for bad in ("rule=no_such_rule", "severity=loud", "region=41a", "offset=-1"):
        answer = api.client.get(f"/api/v1/alerts?{bad}", headers=viewer)
        assert answer.status_code == 422, bad


def test_silence_needs_a_reason_and_keeps_it(api: Api, rows: dict[str, Rows]) -> None:
    operator = api.as_role(Role.OPERATOR)
    alert = rows[INSIDE].alert
    before = _audits(api)
    for query in ("minutes=30", "minutes=30&reason=", "minutes=30&reason=%20%20"):
        answer = api.client.post(f"/api/v1/alerts/{alert}/silence?{query}", headers=operator)
        assert answer.status_code == 422, query
    assert _audits(api) == before
    unchanged = api.client.get(f"/api/v1/alerts/{alert}", headers=operator).json()
    assert unchanged["silenced_until"] is None
    assert unchanged["silence_reason"] is None

    answer = api.client.post(
        f"/api/v1/alerts/{alert}/silence?minutes=30&reason=%20power%20cut%20", headers=operator
    )
    assert answer.status_code == 200, answer.text
    silenced = answer.json()
    assert silenced["silence_reason"] == "power cut"
    assert silenced["silenced_by"]
    assert silenced["silenced_until"]
    assert _audits(api) == before + 1


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"after_s": -5}, "after_s", "after_s: must not be negative"),
        ({"after_s": "soon"}, "after_s", "after_s: must be a number"),
        ({"enabled": "yes"}, "enabled", "enabled: must be true or false"),
        ({"severity": "loud"}, "severity", "severity: must be one of info, warning, critical"),
        ({"after": 60}, "after", "rule 'outlet_offline' has no parameter(s) after"),
    ],
)
def test_a_rule_value_of_the_wrong_kind_is_refused_next_to_its_field(
    api: Api, rows: dict[str, Rows], params: dict[str, object], field: str, message: str
) -> None:
    admin = api.as_role(Role.ADMIN)
    stored = api.client.get("/api/v1/alert-rules", headers=admin).json()["overrides"]
    before = _audits(api)
    body = {"scope": "region", "scope_value": "4101", "rule": "outlet_offline", "params": params}
    answer = api.client.put("/api/v1/alert-rules", json=body, headers=admin)
    assert answer.status_code == 422
    assert answer.json()["detail"] == [
        {"loc": ["body", "params", field], "msg": message, "type": "value_error"}
    ]
    assert api.client.get("/api/v1/alert-rules", headers=admin).json()["overrides"] == stored
    assert _audits(api) == before


def test_the_transaction_list_by_scope_filter_and_page(api: Api, rows: dict[str, Rows]) -> None:
    viewer = api.as_role(Role.VIEWER)

    def listed(query: str, headers: dict[str, str] = viewer) -> list[str]:
        answer = api.client.get(f"/api/v1/transactions?{query}", headers=headers)
        assert answer.status_code == 200, answer.text
        assert all("body" not in tx and "applicant" not in tx for tx in answer.json())
        return [tx["outlet_id"] for tx in answer.json()]

    assert sorted(listed("")) == [INSIDE, OUTSIDE]
    assert listed(f"outlet_id={OUTSIDE}&state=dead&tx_kind=submission") == [OUTSIDE]
    assert listed("state=delivered") == []
    assert listed("until=2000-01-01T00:00:00Z") == []
    assert len(listed("limit=1")) == len(listed("limit=1&offset=1")) == 1
    assert listed("", scoped_users(api)[Role.VIEWER]) == [INSIDE]
    for bad in ("state=lost", "limit=0", "limit=501", "since=yesterday"):
        answer = api.client.get(f"/api/v1/transactions?{bad}", headers=viewer)
        assert answer.status_code == 422, bad


def test_the_dead_letter_list_pages_and_filters_by_outlet(api: Api, rows: dict[str, Rows]) -> None:
    viewer = api.as_role(Role.VIEWER)

    def listed(query: str) -> list[int]:
        answer = api.client.get(f"/api/v1/dead-letters?{query}", headers=viewer)
        assert answer.status_code == 200, answer.text
        return [d["id"] for d in answer.json()]

    assert listed(f"outlet_id={INSIDE}") == [rows[INSIDE].dead_letter]
    first, second = listed("limit=1"), listed("limit=1&offset=1")
    assert {*first, *second} == {rows[INSIDE].dead_letter, rows[OUTSIDE].dead_letter}
    assert listed("offset=2") == []
