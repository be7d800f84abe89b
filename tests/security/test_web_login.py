"""The operator pages with auth on: log in with name + API token, browse with the
session cookie (pages and the SSE stream), CSRF refused, logout ends the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet_server.api.auth import SESSION_COOKIE
from fleet_server.security import Role
from tests.security.api_harness import Api, running_api

ORIGIN = {"Origin": "http://testserver"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path, mqtt_url="mqtt://127.0.0.1:1") as harness:
        yield harness


def _login(api: Api, name: str, token: str, *, origin: dict[str, str] = ORIGIN) -> str | None:
    response = api.client.post(
        "/ui/login",
        content=f"username={name}&token={token}",
        headers=FORM | origin,
        follow_redirects=False,
    )
    if response.status_code != 303:
        return None
    cookie = response.headers["set-cookie"]
    for flag in ("HttpOnly", "Secure", "SameSite=strict", "Max-Age="):
        assert flag.lower() in cookie.lower(), cookie
    value: str = response.cookies[SESSION_COOKIE]
    return value


def test_login_session_and_logout(api: Api) -> None:
    api.client.cookies.clear()
    assert api.client.get("/ui/overview").status_code == 401
    assert api.client.get("/ui/login").status_code == 200

    viewer = api.tokens[Role.VIEWER]
    assert _login(api, "u-viewer", "gvt_wrong") is None
    assert _login(api, "u-admin", viewer) is None  # someone else's token
    assert _login(api, "u-viewer", viewer, origin={"Origin": "https://evil.example"}) is None
    secret = _login(api, "u-viewer", viewer)
    assert secret is not None
    assert secret.startswith("gvs_")
    assert secret not in viewer

    # Secure cookies are not sent over http://testserver by the client: send it by hand.
    cookie = {"Cookie": f"{SESSION_COOKIE}={secret}"}
    assert api.client.get("/ui/overview", headers=cookie).status_code == 200
    assert api.client.get("/api/v1/outlets", headers=cookie).status_code == 200
    with api.client.stream("GET", "/api/v1/stream", headers=cookie) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
    # The session carries the viewer's role, no more; changes need the same Origin.
    assert api.client.post("/api/v1/alerts/evaluate", headers=cookie | ORIGIN).status_code == 403
    # A session secret is not an API token.
    bearer = {"Authorization": f"Bearer {secret}"}
    assert api.client.get("/api/v1/outlets", headers=bearer).status_code == 401

    logout = api.client.post("/ui/logout", headers=cookie | ORIGIN, follow_redirects=False)
    assert logout.status_code == 303
    assert api.client.get("/ui/overview", headers=cookie).status_code == 401


def test_cookie_changes_need_the_servers_origin(api: Api) -> None:
    secret = _login(api, "u-operator", api.tokens[Role.OPERATOR])
    assert secret is not None
    cookie = {"Cookie": f"{SESSION_COOKIE}={secret}"}
    evil = {"Origin": "https://evil.example"}
    assert api.client.post("/api/v1/alerts/evaluate", headers=cookie | evil).status_code == 403
    assert api.client.post("/api/v1/alerts/evaluate", headers=cookie).status_code == 403
    assert api.client.post("/api/v1/alerts/evaluate", headers=cookie | ORIGIN).status_code == 200
