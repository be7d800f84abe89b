"""``GET /console/``: the reference counter console, a page the agent serves itself.

The console is the clerk-app developers' working example (built only on the JS client
at ``/client/govedge-local.js``) and the demo's counter screen. Its files are code, no
data, so ``security.LocalGuard`` lets exactly ``CONSOLE_PATHS`` through without a token,
like the client. Everything the page *does* goes through the local API with a
registered app's token: the page is same-origin with the API
(``http://127.0.0.1:PORT``), but same-origin earns it nothing — its origin must be
registered (``edge-agent apps add counter-console --origin http://127.0.0.1:PORT``) and
the clerk enters that app's token once (kept in the browser's ``localStorage`` for that
origin). Handing the page a token of its own would let any local process fetch one
from an unauthenticated URL.

The answers carry a Content-Security-Policy (scripts and connections to this origin and
its WebSocket only, no framing: a foreign page must not overlay the console) so the
page works without internet and loads nothing from elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from edge_agent.local_api.routing import APIRouter
from edge_agent.local_api.static_files import file_response

__all__ = ["CONSOLE_PATHS", "router"]

_DIR = Path(__file__).with_name("console")
_FILES = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
CONSOLE_PATHS = frozenset({"/console", "/console/", *(f"/console/{name}" for name in _FILES)})
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self' ws://127.0.0.1:* ws://localhost:* "
    "ws://[::1]:*; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

router = APIRouter(prefix="/console", tags=["console"], include_in_schema=False)


def _serve(name: str, request: Request) -> Response:
    headers = {
        "Content-Security-Policy": _CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    return file_response(_DIR / name, _FILES[name], request, headers)


@router.get("")
def console_root() -> RedirectResponse:
    """``/console`` → ``/console/`` so the page's relative URLs resolve."""
    return RedirectResponse("/console/", status_code=308)


@router.get("/")
def console_page(request: Request) -> Response:
    """The console page."""
    return _serve("index.html", request)


@router.get("/console.js")
def console_script(request: Request) -> Response:
    """The console's script (an ES module importing the JS client)."""
    return _serve("console.js", request)


@router.get("/console.css")
def console_style(request: Request) -> Response:
    """The console's style sheet."""
    return _serve("console.css", request)
