"""``/ui/login`` and ``/ui/logout``: a session cookie for the operator pages.

Browsers cannot attach bearer tokens to page loads or ``EventSource``, so an operator
logs in once with their name and API token and gets a server-side session
(``fleet_server.security.sessions``) in a ``Secure; HttpOnly; SameSite=Strict`` cookie.
Login and logout are POSTs refused from a foreign ``Origin`` (CSRF).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html import escape
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from fleet_server.api.auth import SESSION_COOKIE, same_origin
from fleet_server.security import audit
from fleet_server.security.sessions import close_session, open_session, session_principal

router = APIRouter(prefix="/ui", tags=["web ui"], include_in_schema=False)

SESSION_TTL = timedelta(hours=12)
_MAX_FORM = 4096


def _form_page(message: str = "") -> str:
    note = f'<p class="error">{escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>govedge · 登录 / log in</title>
<link rel="stylesheet" href="/ui/static/app.css"></head>
<body><main><h1>govedge</h1>{note}
<form method="post" action="/ui/login">
<label>用户名 / user <input name="username" autocomplete="username" required></label>
<label>API 令牌 / token <input name="token" type="password" autocomplete="current-password"
 required></label>
<button type="submit">登录 / log in</button></form></main></body></html>"""


def _refuse_foreign_origin(request: Request) -> None:
    """403 for a form posted from another site (browsers send ``Origin`` on every POST;
    a script without one, such as ``curl``, cannot ride a browser's cookie)."""
    if "origin" in request.headers and not same_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="cross-origin request refused")


@router.get("/login")
def login_form() -> HTMLResponse:
    """The login form."""
    return HTMLResponse(_form_page(), headers={"Cache-Control": "no-store"})


@router.post("/login")
async def login(request: Request) -> Response:
    """Check name and token; on success set the session cookie and go to the overview."""
    _refuse_foreign_origin(request)
    raw = await request.body()
    form = parse_qs(raw[:_MAX_FORM].decode("utf-8", errors="replace"))
    name = (form.get("username") or [""])[0].strip()
    token = (form.get("token") or [""])[0].strip()
    sessions = request.app.state.fleet.sessions
    with sessions.begin() as session:
        secret = open_session(
            session, name=name, api_token=token, ttl=SESSION_TTL, now=datetime.now(UTC)
        )
        if secret is not None:
            audit.record(session, actor=name, action="session.open", target=f"user:{name}")
    if secret is None:
        # The form again with a note (200, like any re-shown form; no session was made).
        return HTMLResponse(_form_page("用户名或令牌无效 / wrong user or token"))
    response = RedirectResponse("/ui/overview", status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(SESSION_TTL.total_seconds()),
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    """End the session (server side too) and go back to the login form."""
    _refuse_foreign_origin(request)
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        with request.app.state.fleet.sessions.begin() as session:
            principal = session_principal(session, secret, now=datetime.now(UTC))
            if principal is not None:
                name = principal.name
                audit.record(session, actor=name, action="session.close", target=f"user:{name}")
            close_session(session, secret)
    response = RedirectResponse("/ui/login", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response
