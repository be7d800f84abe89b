"""The operator pages with auth on: ``/`` and every page lead to the login form, a user
name and password open a server-side session, ``next`` only goes to local paths, wrong
passwords lock the user (and an address), password changes and logout end sessions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select, update

from fleet_server.api.auth import SESSION_COOKIE
from fleet_server.models import ApiToken, AuditEntry
from fleet_server.security import Role
from fleet_server.security.passwords import set_password, unlock
from fleet_server.security.users import disable_user
from tests.security.api_harness import Api, running_api

ORIGIN = {"Origin": "http://testserver"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
PASSWORD = "correct horse battery"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(
        tmp_path, mqtt_url="mqtt://127.0.0.1:1", login_address_max_failures=8
    ) as harness:
        with harness.session() as session:
            for role in Role:
                set_password(session, name=f"u-{role.value}", password=PASSWORD, actor="test")
        harness.client.cookies.clear()
        yield harness


def _post_login(
    api: Api,
    name: str,
    password: str,
    *,
    next_path: str = "",
    origin: dict[str, str] = ORIGIN,
    lang: str = "en",
) -> httpx.Response:
    """The form posted as the English page does (its hidden ``lang``)."""
    body = f"username={quote(name)}&password={quote(password)}&next={quote(next_path)}"
    body += f"&lang={lang}"
    return api.client.post("/ui/login", content=body, headers=FORM | origin, follow_redirects=False)


def _audit_actions(api: Api) -> list[str]:
    with api.session() as session:
        return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def test_entry_and_pages_lead_to_the_login_form_api_keeps_json(api: Api) -> None:
    html = {"Accept": "text/html,application/xhtml+xml"}
    entry = api.client.get("/", headers=html, follow_redirects=False)
    assert entry.status_code == 303
    assert entry.headers["location"] == "/ui/login?next=%2Fui%2Foverview"
    page = api.client.get("/ui/map?lang=en", headers=html, follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/ui/login?next=%2Fui%2Fmap%3Flang%3Den"
    form = api.client.get(page.headers["location"])
    assert form.status_code == 200
    assert 'name="password" type="password"' in form.text
    assert 'value="/ui/map?lang=en"' in form.text
    assert api.client.get("/ui/static/app.css").status_code == 200  # the form's style
    # API routes and the pages' data calls answer JSON 401, never a redirect.
    for path in ("/api/v1/outlets", "/ui/data/map"):
        answer = api.client.get(path, headers=html, follow_redirects=False)
        assert answer.status_code == 401, path
        assert answer.headers["content-type"] == "application/json"


def test_the_form_is_zh_by_default_and_english_by_the_pages_switch(api: Api) -> None:
    form = api.client.get("/ui/login?next=%2Fui%2Fmap")
    assert '<html lang="zh-CN">' in form.text
    assert "用户名" in form.text
    assert "User name" not in form.text
    assert 'id="lang-switch" href="?lang=en&amp;next=%2Fui%2Fmap"' in form.text
    english = api.client.get("/ui/login?lang=en&next=%2Fui%2Fmap")
    assert '<html lang="en">' in english.text
    assert "User name" in english.text
    assert "用户名" not in english.text
    assert 'value="/ui/map"' in english.text
    # The choice is the pages' cookie: the next form, and the overview after login, are
    # English without asking again.
    assert english.cookies["govedge_lang"] == "en"
    assert '<html lang="en">' in api.client.get("/ui/login").text
    refused = _post_login(api, "u-viewer", "not it", lang="")
    assert "Wrong user name or password" in refused.text
    api.client.cookies.clear()
    refused = _post_login(api, "u-viewer", "not it", lang="")
    assert "用户名或密码错误" in refused.text
    assert "Wrong" not in refused.text


def test_login_goes_to_next_and_the_session_works_until_logout(api: Api) -> None:
    answer = _post_login(api, "u-viewer", PASSWORD, next_path="/ui/map")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/map"
    cookie = answer.headers["set-cookie"].lower()
    for flag in ("httponly", "samesite=strict", "max-age=", "path=/"):
        assert flag in cookie, cookie
    assert "secure" not in cookie  # plain HTTP (the demo): a Secure cookie would not return
    secret = answer.cookies[SESSION_COOKIE]
    assert secret.startswith("gvs_")

    assert api.client.get("/", follow_redirects=False).headers["location"] == "/ui/overview"
    assert api.client.get("/ui/overview").status_code == 200
    assert api.client.get("/api/v1/outlets").status_code == 200
    with api.client.stream("GET", "/api/v1/stream") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
    # The viewer's role, no more; and a session secret is not an API token.
    assert api.client.post("/api/v1/alerts/evaluate", headers=ORIGIN).status_code == 403
    api.client.cookies.clear()
    bearer = {"Authorization": f"Bearer {secret}"}
    assert api.client.get("/api/v1/outlets", headers=bearer).status_code == 401

    cookie_header = {"Cookie": f"{SESSION_COOKIE}={secret}"}
    logout = api.client.post("/ui/logout", headers=cookie_header | ORIGIN, follow_redirects=False)
    assert logout.status_code == 303
    assert api.client.get("/ui/overview", headers=cookie_header).status_code == 401
    assert _audit_actions(api)[-2:] == ["session.open", "session.close"]


def test_cookie_is_secure_over_https(api: Api) -> None:
    answer = api.client.post(
        "https://testserver/ui/login",
        content=f"username=u-viewer&password={quote(PASSWORD)}",
        headers=FORM | {"Origin": "https://testserver"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert "secure" in answer.headers["set-cookie"].lower()


def test_wrong_passwords_unknown_users_and_foreign_forms_are_refused(api: Api) -> None:
    wrong = _post_login(api, "u-admin", "not the password")
    unknown = _post_login(api, "nobody", PASSWORD)
    for answer in (wrong, unknown):
        assert answer.status_code == 200
        assert "Wrong user name or password" in answer.text
        assert SESSION_COOKIE not in answer.cookies
    assert 'value="nobody"' in unknown.text  # the name stays typed, the password does not
    # A token is not a password.
    assert SESSION_COOKIE not in _post_login(api, "u-admin", api.tokens[Role.ADMIN]).cookies
    evil = _post_login(api, "u-admin", PASSWORD, origin={"Origin": "https://evil.example"})
    assert evil.status_code == 403
    assert "login.wrong" in _audit_actions(api)


def test_five_failures_lock_the_user_until_an_admin_unlocks(api: Api) -> None:
    for _ in range(4):
        assert _post_login(api, "u-operator", "guess").status_code == 200
    locked = _post_login(api, "u-operator", "guess")
    assert locked.status_code == 429
    assert "account is locked" in locked.text
    # Locked: even the right password is refused, and says why.
    again = _post_login(api, "u-operator", PASSWORD)
    assert again.status_code == 429
    assert "ask an admin to unlock" in again.text
    assert "login.user_locked" in _audit_actions(api)
    # Another user is not affected.
    assert _post_login(api, "u-viewer", PASSWORD).status_code == 303
    with api.session() as session:
        assert unlock(session, name="u-operator", actor="u-admin") == 5
    assert _post_login(api, "u-operator", PASSWORD).status_code == 303
    assert "user.unlock" in _audit_actions(api)


def test_one_address_trying_many_names_is_refused(api: Api) -> None:
    for n in range(8):
        assert _post_login(api, f"guess-{n}", "guess").status_code == 200
    refused = _post_login(api, "u-viewer", PASSWORD)
    assert refused.status_code == 429
    assert "from this address" in refused.text


@pytest.mark.parametrize(
    "next_path",
    [
        "https://evil.example/",
        "//evil.example/ui",
        "/\\evil.example",
        "\\\\evil.example",
        "%2F%2Fevil.example",
        "/%2F/evil.example",
        "/%5Cevil.example",
        "/%252F%252Fevil.example",
        "javascript:alert(1)",
        "/ui/overview\r\nSet-Cookie: x=1",
        "http:/ui/overview",
        "/api/v1/users",
        "/ui/login",
    ],
)
def test_next_never_leaves_the_pages(api: Api, next_path: str) -> None:
    answer = _post_login(api, "u-viewer", PASSWORD, next_path=next_path)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/overview"
    form = api.client.get("/ui/login", params={"next": next_path})
    assert 'name="next" value="/ui/overview"' in form.text


def test_password_change_disable_idle_and_revocation_end_sessions(api: Api) -> None:
    assert _post_login(api, "u-technician", PASSWORD).status_code == 303
    assert api.client.get("/api/v1/outlets").status_code == 200
    with api.session() as session:
        set_password(session, name="u-technician", password="a new long password", actor="x")
    assert api.client.get("/api/v1/outlets").status_code == 401
    assert "user.password" in _audit_actions(api)
    # The API token of the same user still works (tokens are for scripts).
    headers = api.as_role(Role.TECHNICIAN)
    assert api.client.get("/api/v1/outlets", headers=headers).status_code == 200

    api.client.cookies.clear()
    assert _post_login(api, "u-technician", "a new long password").status_code == 303
    # Idle past session_idle_s (30 min by default): the session has ended.
    with api.session() as session:
        long_ago = datetime.now(UTC) - timedelta(hours=1)
        session.execute(
            update(ApiToken).where(ApiToken.last_used_at.is_not(None)).values(last_used_at=long_ago)
        )
        session.commit()
    assert api.client.get("/api/v1/outlets").status_code == 401

    api.client.cookies.clear()
    assert _post_login(api, "u-technician", "a new long password").status_code == 303
    with api.session() as session:
        disable_user(session, name="u-technician", actor="x")
    assert api.client.get("/api/v1/outlets").status_code == 401
    api.client.cookies.clear()
    refused = _post_login(api, "u-technician", "a new long password")
    assert "Wrong user name or password" in refused.text


def test_cookie_changes_need_the_servers_origin(api: Api) -> None:
    assert _post_login(api, "u-operator", PASSWORD).status_code == 303
    evil = {"Origin": "https://evil.example"}
    assert api.client.post("/api/v1/alerts/evaluate", headers=evil).status_code == 403
    assert api.client.post("/api/v1/alerts/evaluate").status_code == 403
    assert api.client.post("/api/v1/alerts/evaluate", headers=ORIGIN).status_code == 200
