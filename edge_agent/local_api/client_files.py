"""``GET /client/govedge-local.js`` and ``.d.ts``: the JavaScript client, served without a token.

The files are public code (no data), so any page may load them: ``security.LocalGuard``
lets exactly these paths through after its loopback-host check, and the answer carries
``Access-Control-Allow-Origin: *`` because a cross-origin ``<script type="module">`` needs
it. An ETag (content hash, ``static_files``) lets the browser revalidate cheaply after an
agent update.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from edge_agent.local_api.routing import APIRouter
from edge_agent.local_api.static_files import file_response

__all__ = ["CLIENT_PATHS", "router"]

_DIR = Path(__file__).with_name("client")
_FILES = {
    "govedge-local.js": "text/javascript; charset=utf-8",
    "govedge-local.d.ts": "application/typescript; charset=utf-8",
}
CLIENT_PATHS = frozenset(f"/client/{name}" for name in _FILES)

router = APIRouter(prefix="/client", tags=["client"])


def _serve(name: str, request: Request) -> Response:
    # Public code a cross-origin <script type="module"> imports: it needs the CORS header.
    return file_response(_DIR / name, _FILES[name], request, {"Access-Control-Allow-Origin": "*"})


@router.get("/govedge-local.js", summary="The JavaScript client (ES module; no token needed)")
def client_js(request: Request) -> Response:
    """Serve the client module."""
    return _serve("govedge-local.js", request)


@router.get("/govedge-local.d.ts", summary="TypeScript declarations of the client")
def client_types(request: Request) -> Response:
    """Serve the client's type declarations."""
    return _serve("govedge-local.d.ts", request)
