"""``/``, ``/ui/login`` and ``/ui/logout``: how a browser gets a session for the pages.

Browsers cannot attach bearer tokens to page loads or ``EventSource``, so an operator
logs in with their user name and password (``fleet_server.security.passwords``) and gets
a server-side session (``fleet_server.security.sessions``) in an ``HttpOnly;
SameSite=Strict`` cookie (``Secure`` when served over HTTPS). Login and logout are POSTs
refused from a foreign ``Origin`` (CSRF). A page opened without a session redirects here
with ``next=<that page>``; after login the browser goes back there (local paths only).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import escape
from urllib.parse import parse_qs, quote, unquote

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from fleet_server.api.auth import SESSION_COOKIE, same_origin
from fleet_server.security import audit
from fleet_server.security.passwords import Lockout, LoginResult, check_login
from fleet_server.security.sessions import close_session, open_session, session_principal
from fleet_server.web.i18n import LANGS, table
from fleet_server.web.ui import LANG_COOKIE, page_lang, static_url

router = APIRouter(prefix="/ui", tags=["web ui"], include_in_schema=False)
root_router = APIRouter(tags=["web ui"], include_in_schema=False)

HOME = "/ui/overview"
_MAX_FORM = 4096
# A local path: one leading slash, then no second slash or backslash right after it,
# and only URL characters (no control characters, no scheme).
_LOCAL_PATH = re.compile(r"\A/(?![/\\])[A-Za-z0-9\-._~!$&'()*+,;=:@/%?]*\Z")
_MESSAGES = {
    LoginResult.WRONG: "login_wrong",
    LoginResult.USER_LOCKED: "login_user_locked",
    LoginResult.ADDRESS_LOCKED: "login_address_locked",
}


def safe_next(value: str | None) -> str:
    """``value`` if it is a path on this server, else the overview (no open redirect).

    Refused: absolute URLs, scheme-relative ``//host``, backslashes (browsers read
    ``/\\host`` as ``//host``) and any of those percent-encoded.
    """
    if not value:
        return HOME
    decoded = value
    for _ in range(3):  # %252F... decodes in steps; a path needs no more than that
        decoded = unquote(decoded)
    for candidate in (value, decoded):
        if not _LOCAL_PATH.match(candidate) or "\\" in candidate:
            return HOME
    if not value.startswith("/ui") or value.startswith("/ui/login"):
        return HOME
    return value


def _secure(request: Request) -> bool:
    """Mark the cookie ``Secure`` when served over HTTPS (the browser then never sends
    it in clear); over plain HTTP (the demo on 127.0.0.1) it could not be sent back."""
    return request.url.scheme == "https"


def _form_page(next_path: str, lang: str, message: str = "", name: str = "") -> str:
    """The form in ``lang``, with the same language switch as the other pages (the
    choice is kept in the same cookie, and a re-shown form keeps it)."""
    t = table(lang)
    other = "en" if lang == "zh" else "zh"
    switch = f"?lang={other}&next={quote(next_path, safe='')}"
    note = f'<p class="error" id="login-error">{escape(t[message])}</p>' if message else ""
    return f"""<!doctype html>
<html lang="{"zh-CN" if lang == "zh" else "en"}"><head><meta charset="utf-8">
<title>govedge · {escape(t["login_title"])}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{static_url("app.css")}"></head>
<body><main class="login"><h1>{escape(t["title"])}</h1><h2>{escape(t["login_title"])}</h2>
<p><a id="lang-switch" href="{escape(switch)}">{escape(t["switch_lang"])}</a></p>{note}
<form method="post" action="/ui/login">
<input type="hidden" name="next" value="{escape(next_path)}">
<input type="hidden" name="lang" value="{lang}">
<label>{escape(t["login_user"])} <input name="username" autocomplete="username" required
 value="{escape(name)}"></label>
<label>{escape(t["login_password"])} <input name="password" type="password"
 autocomplete="current-password" required></label>
<button type="submit">{escape(t["login_submit"])}</button></form></main></body></html>"""


def _form_response(html: str, request: Request, lang: str, code: int = 200) -> HTMLResponse:
    response = HTMLResponse(html, status_code=code, headers={"Cache-Control": "no-store"})
    if request.query_params.get("lang") in LANGS:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax")
    return response


def _refuse_foreign_origin(request: Request) -> None:
    """403 for a form posted from another site (browsers send ``Origin`` on every POST;
    a script without one, such as ``curl``, cannot ride a browser's cookie)."""
    if "origin" in request.headers and not same_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="cross-origin request refused")


def _has_session(request: Request) -> bool:
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return False
    settings = request.app.state.security.settings
    with request.app.state.fleet.sessions.begin() as session:
        principal = session_principal(
            session, secret, idle=timedelta(seconds=settings.session_idle_s), now=datetime.now(UTC)
        )
    return principal is not None


@root_router.get("/")
def entry(request: Request) -> RedirectResponse:
    """The server's address: the overview with a session, else the login page."""
    if _has_session(request) or not request.app.state.security.auth_enabled:
        return RedirectResponse(HOME, status_code=status.HTTP_303_SEE_OTHER)
    return RedirectResponse(
        f"/ui/login?next={quote(HOME, safe='')}", status_code=status.HTTP_303_SEE_OTHER
    )


@router.get("/login")
def login_form(request: Request, next: str | None = None, lang: str | None = None) -> HTMLResponse:
    """The login form, in zh-CN unless ``lang`` or the language cookie says English."""
    chosen = page_lang(request, lang)
    return _form_response(_form_page(safe_next(next), chosen), request, chosen)


@router.post("/login")
async def login(request: Request) -> Response:
    """Check name and password; on success set the session cookie and go to ``next``."""
    _refuse_foreign_origin(request)
    raw = await request.body()
    form = parse_qs(raw[:_MAX_FORM].decode("utf-8", errors="replace"))
    name = (form.get("username") or [""])[0].strip()[:64]
    password = (form.get("password") or [""])[0]
    next_path = safe_next((form.get("next") or [""])[0])
    lang = page_lang(request, (form.get("lang") or [""])[0])
    settings = request.app.state.security.settings
    policy = Lockout(
        max_failures=settings.login_max_failures,
        window=timedelta(seconds=settings.login_lockout_s),
        address_max_failures=settings.login_address_max_failures,
    )
    address = request.client.host if request.client else "unknown"
    now = datetime.now(UTC)
    ttl = timedelta(seconds=settings.session_max_s)
    with request.app.state.fleet.sessions.begin() as session:
        checked = check_login(
            session, name=name, password=password, address=address, policy=policy, now=now
        )
        secret = None
        if checked.result is LoginResult.OK and checked.user_id is not None:
            secret = open_session(session, user_id=checked.user_id, ttl=ttl, now=now)
            audit.record(session, actor=name, action="session.open", target=f"user:{name}")
        else:
            # The name as typed may be anyone's; the audit keeps it, logs do not.
            audit.record(
                session,
                actor="anonymous",
                action=f"login.{checked.result.value}",
                target=f"user:{name}",
            )
    if secret is None:
        # A wrong password gets the form again (200, like any re-shown form); a lockout
        # is 429, as the server refuses to check more guesses for now.
        code = status.HTTP_200_OK
        if checked.result is not LoginResult.WRONG:
            code = status.HTTP_429_TOO_MANY_REQUESTS
        page = _form_page(next_path, lang, _MESSAGES[checked.result], name)
        return _form_response(page, request, lang, code)
    response = RedirectResponse(next_path, status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        SESSION_COOKIE, secret, max_age=int(ttl.total_seconds()), path="/",
        secure=_secure(request), httponly=True, samesite="strict",
    )  # fmt: skip
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    """End the session (server side too) and go back to the login form."""
    _refuse_foreign_origin(request)
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        idle = timedelta(seconds=request.app.state.security.settings.session_idle_s)
        with request.app.state.fleet.sessions.begin() as session:
            principal = session_principal(session, secret, idle=idle, now=datetime.now(UTC))
            if principal is not None:
                name = principal.name
                audit.record(session, actor=name, action="session.close", target=f"user:{name}")
            close_session(session, secret)
    response = RedirectResponse("/ui/login", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=_secure(request), httponly=True, samesite="strict"
    )
    return response


async def redirect_pages_to_login(request: Request, exc: Exception) -> Response:
    """A page (an HTML GET under ``/ui``) opened without a session goes to the login
    page with ``next``; everything else, API routes above all, keeps its JSON error."""
    assert isinstance(exc, StarletteHTTPException)
    path = request.url.path
    wants_page = request.method == "GET" and "text/html" in request.headers.get("accept", "")
    is_page = path.startswith("/ui") and not path.startswith(("/ui/data/", "/ui/static/"))
    if exc.status_code == status.HTTP_401_UNAUTHORIZED and wants_page and is_page:
        target = path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(
            f"/ui/login?next={quote(safe_next(target), safe='')}",
            status_code=status.HTTP_303_SEE_OTHER,
        )
    return await http_exception_handler(request, exc)
