"""The config API in-process, on SQLite and PostgreSQL: If-Match between two operators,
immutable versions, diff, rollback, refusals that store nothing, the outlet view with
provenance and status, drift, the dry run, and who may write."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fleet_server.config.tables import OutletConfig
from fleet_server.health.tables import OutletProfile
from fleet_server.security import Role
from govedge_wire.config import config_hash
from tests.security.api_harness import Api, running_api

CONFIG = "/api/v1/config"
OPERATOR, VIEWER = Role.OPERATOR, Role.VIEWER


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    with running_api(tmp_path, mqtt_url="mqtt://127.0.0.1:1", database_url=url) as harness:
        yield harness


def _put(
    api: Api, scope: str, document: Any, *, if_match: int | None = None,
    role: Role = OPERATOR, **params: str,
) -> Any:  # fmt: skip
    headers = api.as_role(role) | ({} if if_match is None else {"If-Match": str(if_match)})
    return api.client.put(f"{CONFIG}/{scope}", json=document, headers=headers, params=params)


def _get(api: Api, path: str, role: Role = VIEWER) -> Any:
    response = api.client.get(path, headers=api.as_role(role))
    assert response.status_code == 200, response.text
    return response.json()


def _config_audit(api: Api) -> list[dict[str, Any]]:
    rows = _get(api, "/api/v1/audit?action=config.*", Role.ADMIN)
    return list(rows)


def test_two_operators_one_wins_the_other_gets_412(api: Api) -> None:
    assert _put(api, "global", {"log_level": "INFO"}).status_code == 200
    # Both operators read version 1 ...
    first = api.client.get(f"{CONFIG}/global", headers=api.as_role(OPERATOR))
    assert first.headers["ETag"] == '"1"'
    seen = first.json()["version"]
    # ... the first stores, the second's change was made against a version now gone.
    won = _put(api, "global", {"log_level": "DEBUG"}, if_match=seen, comment="debug a week")
    assert won.status_code == 200, won.text
    lost = _put(api, "global", {"log_level": "ERROR"}, if_match=seen)
    assert lost.status_code == 412
    assert lost.json()["current_version"] == 2
    assert "version 2" in lost.json()["detail"]
    # Without If-Match on an existing scope: 428; If-Match 0 ("new") on it: 412.
    assert _put(api, "global", {"log_level": "ERROR"}).status_code == 428
    assert _put(api, "global", {"log_level": "ERROR"}, if_match=0).status_code == 412
    for garbage in (b"*", "²".encode("latin-1"), b"v2", b"12345678901"):
        headers: dict[str, str | bytes] = {**api.as_role(OPERATOR), "If-Match": garbage}
        bad = api.client.put(f"{CONFIG}/global", json={}, headers=headers)
        assert bad.status_code == 400, garbage
        assert "If-Match must be the version number" in bad.json()["detail"]
    current = _get(api, f"{CONFIG}/global")
    assert (current["version"], current["document"]) == (2, {"log_level": "DEBUG"})
    assert (current["author"], current["comment"]) == ("u-operator", "debug a week")
    assert [v["version"] for v in _get(api, f"{CONFIG}/global/versions")] == [2, 1]
    assert [row["action"] for row in _config_audit(api)] == ["config.put", "config.put"]


def test_of_many_operators_writing_at_once_exactly_one_wins(api: Api) -> None:
    assert _put(api, "kind:kiosk", {"log_level": "INFO"}).status_code == 200
    levels = ["DEBUG", "WARNING", "ERROR", "INFO"] * 2
    with ThreadPoolExecutor(max_workers=len(levels)) as pool:
        answers = list(pool.map(
            lambda level: _put(api, "kind:kiosk", {"log_level": level}, if_match=1), levels
        ))  # fmt: skip
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [200] + [412] * (len(levels) - 1)
    winner = next(answer.json() for answer in answers if answer.status_code == 200)
    assert _get(api, f"{CONFIG}/kind:kiosk")["document"] == winner["document"]
    assert [v["version"] for v in _get(api, f"{CONFIG}/kind:kiosk/versions")] == [2, 1]
    assert len(_config_audit(api)) == 2
    # Creating a scope at once: one creates it, the others are told it exists now.
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda level: _put(api, "kind:bank", {"log_level": level}),
                                levels[:4]))  # fmt: skip
    codes = sorted(answer.status_code for answer in answers)
    assert codes[0] == 200
    assert set(codes[1:]) <= {412, 428}, codes
    assert [v["version"] for v in _get(api, f"{CONFIG}/kind:bank/versions")] == [1]


def test_versions_stay_diff_and_rollback(api: Api) -> None:
    v1 = {"telemetry": {"interval_s": 30.0}, "queue": {"voice": {"enabled": True, "volume": 60}}}
    v2 = {"telemetry": {"interval_s": 60.0}, "queue": {"voice": {"enabled": True}},
          "log_level": "WARNING"}  # fmt: skip
    assert _put(api, "region:33", v1).status_code == 200
    assert _put(api, "region:33", v2, if_match=1, closed_hours_only="true").status_code == 200
    assert _get(api, f"{CONFIG}/region:33/versions/1")["document"] == v1  # unchanged by v2
    diff = _get(api, f"{CONFIG}/region:33/diff?from=1&to=2")["changes"]
    assert diff == [
        {"path": "log_level", "op": "added", "from": None, "to": "WARNING"},
        {"path": "queue.voice.volume", "op": "removed", "from": 60, "to": None},
        {"path": "telemetry.interval_s", "op": "changed", "from": 30.0, "to": 60.0},
    ]
    # Rolling back writes version 3 with version 1's document; 1 and 2 stay as they were.
    rolled = api.client.post(
        f"{CONFIG}/region:33/rollback", json={"version": 1, "comment": "v2 was wrong"},
        headers=api.as_role(OPERATOR) | {"If-Match": "2"},
    )  # fmt: skip
    assert rolled.status_code == 200, rolled.text
    assert (rolled.json()["version"], rolled.json()["rolled_back_to"]) == (3, 1)
    assert _get(api, f"{CONFIG}/region:33")["document"] == v1
    assert _get(api, f"{CONFIG}/region:33/diff?from=1&to=3")["changes"] == []
    versions = _get(api, f"{CONFIG}/region:33/versions")
    assert [(v["version"], v["rolled_back_to"], v["closed_hours_only"]) for v in versions] == [
        (3, 1, False), (2, None, True), (1, None, False),
    ]  # fmt: skip
    assert _get(api, f"{CONFIG}/region:33/versions/2")["document"] == v2
    # A rollback against a stale version is refused like any write.
    stale = api.client.post(f"{CONFIG}/region:33/rollback", json={"version": 2},
                            headers=api.as_role(OPERATOR) | {"If-Match": "2"})  # fmt: skip
    assert stale.status_code == 412
    missing = api.client.get(f"{CONFIG}/region:33/versions/9", headers=api.as_role(VIEWER))
    assert missing.status_code == 404
    assert _get(api, CONFIG) == [
        {"scope": "region:33", "version": 3, "author": "u-operator",
         "created_at": versions[0]["created_at"], "comment": "v2 was wrong"},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("scope", "document", "says"),
    [
        ("region:3x", {"log_level": "INFO"}, "region code must be 2-12 digits"),
        ("district:1", {"log_level": "INFO"}, "unknown scope level"),
        ("global", {"log_levels": "INFO"}, "Extra inputs are not permitted"),
        ("global", {"queue": {"voice": {"volume": 101}}}, "less than or equal to 100"),
        ("global", {"alerts": {"outlet_ofline": {"after_s": 60}}}, "unknown rule"),
        ("global", {"alerts": {"outlet_offline": {"after": 60}}}, "has no parameter"),
        ("global", ["not", "an", "object"], "must be a JSON object"),
    ],
)
def test_invalid_scope_or_document_is_422_and_stores_nothing(
    api: Api, scope: str, document: Any, says: str
) -> None:
    response = _put(api, scope, document)
    assert response.status_code == 422
    assert says in json.dumps(response.json()["detail"])
    assert _get(api, CONFIG) == []
    assert _config_audit(api) == []


def test_unparsable_and_oversize_bodies_are_refused(api: Api) -> None:
    headers = api.as_role(OPERATOR) | {"Content-Type": "application/json"}
    for body in (b'{"log_level": ', b'{"telemetry": {"interval_s": NaN}}'):
        response = api.client.put(f"{CONFIG}/global", content=body, headers=headers)
        assert response.status_code == 422
        assert "not JSON" in response.json()["detail"]
    huge = {"evaluation": {"channels": {str(n): "x" * 32 for n in range(10)}},
            "devices": {"haochaping-pad": {f"k{n}": "y" * 200 for n in range(700)}}}  # fmt: skip
    response = _put(api, "global", huge)
    assert response.status_code == 413
    assert "at most 131072 bytes" in response.json()["detail"]
    assert _get(api, CONFIG) == []
    metrics = api.client.get("/metrics", headers=api.as_role(Role.ADMIN)).text
    assert 'govedge_config_writes_refused_total{reason="too_large"}' in metrics


def _profiles(api: Api) -> None:
    with api.session() as session, session.begin():
        for outlet_id, region, kind in (
            ("o-west", "330106", "township_centre"),
            ("o-city", "3301", "kiosk"),
            ("o-anhui", "340102", "township_centre"),
        ):
            session.add(OutletProfile(outlet_id=outlet_id, name=outlet_id, kind=kind,
                                      region_code=region, service_items=[]))  # fmt: skip


def _windows(*names: str, pad: str | None = "pad-1") -> list[dict[str, Any]]:
    return [{"window": n, "business_types": ["A"], "pad": pad} for n in names]


def test_outlet_view_shows_each_values_scope_and_status(api: Api) -> None:
    _profiles(api)
    _put(api, "global", {"log_level": "INFO", "telemetry": {"interval_s": 30.0}})
    _put(api, "region:33", {"telemetry": {"interval_s": 60.0}, "outbox": {"rate_per_s": 5.0}})
    _put(api, "region:3301", {"outbox": {"rate_per_s": 8.0}})
    _put(api, "outlet:o-west", {"telemetry": {"interval_s": 15.0}})
    west = _get(api, "/api/v1/outlets/o-west/config")
    assert west["effective"]["config"] == {
        "log_level": "INFO", "telemetry": {"interval_s": 15.0}, "outbox": {"rate_per_s": 8.0},
    }  # fmt: skip
    assert west["provenance"] == {
        "log_level": "global",
        "outbox.rate_per_s": "region:3301",  # the longer region prefix beats region:33
        "telemetry.interval_s": "outlet:o-west",  # the outlet beats its region
    }
    assert west["effective"]["layers"][-2:] == ["kind:township_centre", "outlet:o-west"]
    assert (west["status"], west["desired"], west["reported"]) == ("unknown", None, None)
    assert _get(api, "/api/v1/outlets/o-city/config")["provenance"]["telemetry.interval_s"] == (
        "region:33"
    )
    anhui = _get(api, "/api/v1/outlets/o-anhui/config")
    assert anhui["provenance"] == {"log_level": "global", "telemetry.interval_s": "global"}
    missing = api.client.get("/api/v1/outlets/o-nowhere/config", headers=api.as_role(VIEWER))
    assert missing.status_code == 404


def _shadow(api: Api, outlet_id: str, config: dict[str, Any], **fields: Any) -> None:
    with api.session() as session, session.begin():
        session.add(OutletConfig(outlet_id=outlet_id, desired_version=4, desired=config,
                                 desired_hash=config_hash(config), **fields))  # fmt: skip


def test_status_and_drift_from_what_agents_report(api: Api) -> None:
    _profiles(api)
    _put(api, "global", {"log_level": "INFO"})
    now = datetime.now(UTC)
    effective = {"log_level": "INFO"}
    good = config_hash(effective)
    # o-west runs exactly what the scopes give: in sync.
    _shadow(api, "o-west", effective, reported_version=4, reported_hash=good,
            reported_at=now, in_sync_since=now - timedelta(hours=1))  # fmt: skip
    # o-city refused version 4 and still runs version 3.
    _shadow(api, "o-city", effective, reported_version=3, reported_hash="a" * 64,
            reported_at=now, refused_version=4, refused_reason="bad_signature",
            refused_at=now - timedelta(hours=3))  # fmt: skip
    # o-anhui was sent version 4 and runs an old one without refusing: still on its way.
    _shadow(api, "o-anhui", effective, reported_version=2, reported_hash="b" * 64,
            reported_at=now, published_at=now - timedelta(hours=2))  # fmt: skip
    west = _get(api, "/api/v1/outlets/o-west/config")
    assert (west["status"], west["effective"]["pending_publication"]) == ("in_sync", False)
    assert west["reported"]["hash"] == good
    city = _get(api, "/api/v1/outlets/o-city/config")
    assert city["status"] == "refused"
    assert city["last_refusal"]["reason"] == "bad_signature"
    drift = _get(api, f"{CONFIG}/drift")
    assert [(row["outlet_id"], row["status"]) for row in drift] == [
        ("o-city", "refused"), ("o-anhui", "pending"),  # oldest first; o-west not listed
    ]  # fmt: skip
    # A scope change not signed yet makes even the in-sync outlet pending.
    _put(api, "global", {"log_level": "DEBUG"}, if_match=1)
    west = _get(api, "/api/v1/outlets/o-west/config")
    assert (west["status"], west["effective"]["pending_publication"]) == ("pending", True)
    assert "o-west" in [row["outlet_id"] for row in _get(api, f"{CONFIG}/drift")]


def test_a_fleet_without_config_is_in_sync_not_pending(api: Api) -> None:
    """No scope set: the reconciler signs nothing, so nothing waits (the demo's first day)."""
    _profiles(api)
    with api.session() as session, session.begin():
        # What the report desk writes from a birth of an agent that runs no config.
        session.add(OutletConfig(outlet_id="o-west", desired_version=0,
                                 reported_at=datetime.now(UTC)))  # fmt: skip
    west = _get(api, "/api/v1/outlets/o-west/config")
    assert (west["status"], west["effective"]["pending_publication"]) == ("in_sync", False)
    assert [row["outlet_id"] for row in _get(api, f"{CONFIG}/drift")] == ["o-anhui", "o-city"]
    # Once a scope gives it something, it waits for the reconciler like any outlet.
    _put(api, "global", {"log_level": "INFO"})
    west = _get(api, "/api/v1/outlets/o-west/config")
    assert (west["status"], west["effective"]["pending_publication"]) == ("pending", True)


def test_dry_run_names_exactly_the_outlets_of_the_region(api: Api) -> None:
    _profiles(api)
    _put(api, "global", {"queue": {"windows": _windows("1", "2")}})
    document = {"queue": {"windows": _windows("1", pad=None)}}
    response = api.client.post(f"{CONFIG}/validate", json={"scope": "region:3301",
                               "document": document}, headers=api.as_role(OPERATOR))  # fmt: skip
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["outlets_changed"] == 2
    assert [o["outlet_id"] for o in answer["outlets"]] == ["o-city", "o-west"]  # not o-anhui
    city = answer["outlets"][0]
    assert city["takes_devices_away"] == ["window 1: pad pad-1 unbound", "window 2 removed"]
    assert city["changes"][0]["path"] == "queue.windows"
    assert answer["outlets_taking_devices_away"] == 2
    # Nothing stored, nothing audited but the global put.
    assert [row["scope"] for row in _get(api, CONFIG)] == ["global"]
    assert len(_config_audit(api)) == 1
    invalid = api.client.post(f"{CONFIG}/validate", json={"scope": "region:3301",
                              "document": {"queue": {"voice": {"volume": -1}}}},
                              headers=api.as_role(OPERATOR))  # fmt: skip
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["loc"] == ["queue", "voice", "volume"]


def test_viewers_read_operators_write(api: Api) -> None:
    refused = _put(api, "global", {"log_level": "INFO"}, role=VIEWER)
    assert refused.status_code == 403
    assert _get(api, CONFIG) == []
    assert _put(api, "global", {"log_level": "INFO"}, role=OPERATOR).status_code == 200
    assert _get(api, f"{CONFIG}/global", VIEWER)["document"] == {"log_level": "INFO"}
    dry = api.client.post(f"{CONFIG}/validate", json={"scope": "global", "document": {}},
                          headers=api.as_role(VIEWER))  # fmt: skip
    assert dry.status_code == 403
