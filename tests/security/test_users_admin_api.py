"""The admin routes the users and enrollment pages use, on SQLite and PostgreSQL: a user
made with a typed or generated password logs in through the form; a password reset ends
the sessions; unlock re-enables and lifts a lockout; sessions revoked; weak input
refused with nothing stored; enrollment tokens and certificates listed with states."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fleet_server.models import Certificate
from fleet_server.security import Role
from tests.security.api_harness import Api, running_api

USERS = "/api/v1/users"
GOOD = "county clerk password 1"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    with running_api(tmp_path, mqtt_url="mqtt://127.0.0.1:1", database_url=url) as harness:
        yield harness


def _admin(api: Api) -> dict[str, str]:
    return api.as_role(Role.ADMIN)


def _login(api: Api, name: str, password: str) -> Any:
    form = {"username": name, "password": password, "next": "/ui/overview"}
    api.client.cookies.clear()
    return api.client.post("/ui/login", data=form, follow_redirects=False)


def _names(api: Api) -> list[str]:
    return [u["name"] for u in api.client.get(USERS, headers=_admin(api)).json()]


def test_a_user_made_with_a_password_logs_in(api: Api) -> None:
    typed = {"name": "op-typed", "role": "operator", "regions": ["4104"], "password": GOOD}
    made = api.client.post(USERS, json=typed, headers=_admin(api))
    assert made.status_code == 201, made.text
    assert made.json()["password"] is None  # typed: not echoed back
    assert made.json()["token"].startswith("gvt_")
    assert _login(api, "op-typed", GOOD).status_code == 303
    generated = api.client.post(USERS, json={"name": "op-gen", "role": "viewer",
                                             "generate_password": True},
                                headers=_admin(api))  # fmt: skip
    password = generated.json()["password"]
    assert len(password) >= 10
    assert _login(api, "op-gen", password).status_code == 303
    assert _login(api, "op-gen", "wrong password here").status_code == 200


def test_bad_passwords_create_nothing(api: Api) -> None:
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"password": "short"}, 400, "at least 10"),
        ({"password": GOOD, "generate_password": True}, 400, "not both"),
    ]
    for extra, code, detail in cases:
        body: dict[str, Any] = {"name": "op-bad", "role": "operator", **extra}
        answer = api.client.post(USERS, json=body, headers=_admin(api))
        assert answer.status_code == code, answer.text
        assert detail in answer.json()["detail"]
    assert "op-bad" not in _names(api)
    refused = api.client.post(USERS, json={"name": "op-x", "role": "operator", "password": GOOD},
                              headers=api.as_role(Role.OPERATOR))  # fmt: skip
    assert refused.status_code == 403
    assert "op-x" not in _names(api)


def test_password_reset_ends_the_sessions(api: Api) -> None:
    api.client.post(USERS, json={"name": "op-r", "role": "operator", "password": GOOD},
                    headers=_admin(api))  # fmt: skip
    cookie = _login(api, "op-r", GOOD).cookies.get("govedge_session")
    page = {"Cookie": f"govedge_session={cookie}", "Accept": "text/html"}
    api.client.cookies.clear()
    assert api.client.get("/ui/overview", headers=page, follow_redirects=False).status_code == 200
    reset = api.client.post(f"{USERS}/op-r/password", json={"generate": True},
                            headers=_admin(api))  # fmt: skip
    assert reset.status_code == 200, reset.text
    new = reset.json()["password"]
    assert api.client.get("/ui/overview", headers=page, follow_redirects=False).status_code == 303
    assert _login(api, "op-r", GOOD).status_code == 200  # the old one no longer works
    assert _login(api, "op-r", new).status_code == 303
    weak = api.client.post(f"{USERS}/op-r/password", json={"password": "x"}, headers=_admin(api))
    assert weak.status_code == 400
    assert _login(api, "op-r", new).status_code == 303
    nothing = api.client.post(f"{USERS}/op-r/password", json={}, headers=_admin(api))
    assert nothing.status_code == 400
    missing = api.client.post(f"{USERS}/nobody/password", json={"generate": True},
                              headers=_admin(api))  # fmt: skip
    assert missing.status_code == 404


def test_unlock_reenables_and_lifts_the_lockout_and_sessions_can_be_revoked(api: Api) -> None:
    api.client.post(USERS, json={"name": "op-l", "role": "operator", "password": GOOD},
                    headers=_admin(api))  # fmt: skip
    for _ in range(5):
        _login(api, "op-l", "not the password!")
    assert _login(api, "op-l", GOOD).status_code == 429  # locked
    assert api.client.post(f"{USERS}/op-l/disable", headers=_admin(api)).status_code == 200
    unlocked = api.client.post(f"{USERS}/op-l/unlock", headers=_admin(api))
    assert unlocked.json() == {"name": "op-l", "disabled": False, "failures_forgotten": 5,
                               "sessions_ended": 0}  # fmt: skip
    first = _login(api, "op-l", GOOD)
    assert first.status_code == 303
    _login(api, "op-l", GOOD)
    revoked = api.client.post(f"{USERS}/op-l/sessions/revoke", headers=_admin(api))
    assert revoked.json()["sessions_ended"] == 2
    page = {"Cookie": f"govedge_session={first.cookies.get('govedge_session')}",
            "Accept": "text/html"}  # fmt: skip
    api.client.cookies.clear()
    assert api.client.get("/ui/overview", headers=page, follow_redirects=False).status_code == 303
    audit = api.client.get("/api/v1/audit", params={"target": "user:op-l"},
                           headers=_admin(api)).json()  # fmt: skip
    actions = [row["action"] for row in audit]
    for action in ("user.enable", "user.unlock", "user.sessions_revoke", "user.disable"):
        assert action in actions


def test_enrollment_tokens_and_certificates_are_listed_with_their_state(api: Api) -> None:
    admin = _admin(api)
    for outlet in ("en-1", "en-2"):
        made = api.client.post("/api/v1/enrollments", json={"outlet_id": outlet, "ttl_s": 600},
                               headers=admin)  # fmt: skip
        assert made.status_code == 201
    listed = api.client.get("/api/v1/enrollments", headers=admin).json()
    assert [(r["outlet_id"], r["state"], r["created_by"]) for r in listed] == [
        ("en-2", "unused", "u-admin"), ("en-1", "unused", "u-admin"),
    ]  # fmt: skip
    assert "token" not in listed[0]
    assert (
        api.client.get("/api/v1/enrollments", params={"q": "en-1"}, headers=admin).json()[0][
            "outlet_id"
        ]
        == "en-1"
    )
    now = datetime.now(UTC)
    with api.session() as session, session.begin():
        for serial, days, revoked in (("a1", 90, False), ("a2", 5, False), ("a3", -1, False),
                                      ("a4", 60, True)):  # fmt: skip
            session.add(Certificate(
                serial=serial, outlet_id=f"en-{serial}", fingerprint_sha256="0" * 64,
                issued_at=now - timedelta(days=10), not_after=now + timedelta(days=days),
                revoked_at=now if revoked else None,
            ))  # fmt: skip
    page = api.client.get("/api/v1/certificates", headers=admin).json()
    assert page["total"] == 3
    assert [(r["serial"], r["state"]) for r in page["items"]] == [
        ("a3", "expired"), ("a2", "expiring"), ("a1", "valid"),
    ]  # fmt: skip
    params = {"revoked": "true", "limit": "1", "offset": "2"}
    both = api.client.get("/api/v1/certificates", params=params, headers=admin).json()
    assert (both["total"], [r["state"] for r in both["items"]]) == (4, ["revoked"])
    for role in (Role.VIEWER, Role.TECHNICIAN):
        assert api.client.get("/api/v1/certificates", headers=api.as_role(role)).status_code == 403
