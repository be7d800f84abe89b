"""``GET /hall/display`` and ``/hall/kiosk``: the hall's screens, served by the agent.

The hall display (叫号大屏) and the ticket kiosk (取号机) are plain HTML and ES modules
in ``hall/`` that use the agent's JavaScript client; the outlet has no internet, so
nothing is loaded from anywhere else (the Content-Security-Policy says so to the
browser). The files are code, no data, so ``security.LocalGuard`` lets these paths
through without a token, as it does the client; the page takes its token from the
URL's fragment (``#token=…``, never sent to the server or logged) and calls the API as
a ``display`` or ``kiosk`` app (``roles.py``). Setup: docs/hall-pages.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from edge_agent.local_api.errors import ApiError
from edge_agent.local_api.routing import APIRouter
from edge_agent.local_api.static_files import file_response

__all__ = ["HALL_PATHS", "router"]

_DIR: Final = Path(__file__).with_name("hall")
_PAGES: Final = {"display": "display.html", "kiosk": "kiosk.html"}
_ASSETS: Final = {
    "hall.css": "text/css; charset=utf-8",
    "hall-common.js": "text/javascript; charset=utf-8",
    "display.js": "text/javascript; charset=utf-8",
    "kiosk.js": "text/javascript; charset=utf-8",
}
HALL_PATHS: Final = frozenset(
    [f"/hall/{page}" for page in _PAGES] + [f"/hall/{name}" for name in _ASSETS]
)
# Same origin only: scripts, styles, the API, its WebSocket and the announcement audio
# (fetched with the token, then played from a blob: URL).
_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "media-src blob:; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS: Final = {"Content-Security-Policy": _CSP, "Referrer-Policy": "no-referrer"}


def _page(page: str, request: Request) -> Response:
    return file_response(_DIR / _PAGES[page], "text/html; charset=utf-8", request, _HEADERS)


router = APIRouter(prefix="/hall", tags=["hall"], include_in_schema=False)


@router.get("/display")
def display(request: Request) -> Response:
    """The hall display page."""
    return _page("display", request)


@router.get("/kiosk")
def kiosk(request: Request) -> Response:
    """The ticket kiosk page."""
    return _page("kiosk", request)


@router.get("/{name}")
def asset(name: str, request: Request) -> Response:
    """A script or style sheet of the pages."""
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise ApiError(404, "not_found", "no such hall page file", hint="open /hall/display")
    return file_response(_DIR / name, media_type, request, _HEADERS)
