"""``GET /client/govedge-local.js`` and ``.d.ts``: the JavaScript client, served without a token.

The files are public code (no data), so any page may load them: ``security.LocalGuard``
lets exactly these paths through after its loopback-host check, and the answer carries
``Access-Control-Allow-Origin: *`` because a cross-origin ``<script type="module">`` needs
it. An ETag (content hash) lets the browser revalidate cheaply after an agent update.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request, Response

__all__ = ["CLIENT_PATHS", "router", "serve_file"]

_DIR = Path(__file__).with_name("client")
_FILES = {
    "govedge-local.js": "text/javascript; charset=utf-8",
    "govedge-local.d.ts": "application/typescript; charset=utf-8",
}
CLIENT_PATHS = frozenset(f"/client/{name}" for name in _FILES)

router = APIRouter(prefix="/client", tags=["client"])


@cache
def _load(path: Path) -> tuple[bytes, str]:
    body = path.read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def serve_file(
    path: Path, media_type: str, request: Request, *, headers: dict[str, str]
) -> Response:
    """A file shipped with the agent, with its ETag, revalidated on every load."""
    body, etag = _load(path)
    headers = {
        **headers,
        "ETag": etag,
        "Cache-Control": "no-cache",  # always revalidate: an agent update changes the file
    }
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


def _serve(name: str, request: Request) -> Response:
    return serve_file(
        _DIR / name, _FILES[name], request, headers={"Access-Control-Allow-Origin": "*"}
    )


@router.get("/govedge-local.js", summary="The JavaScript client (ES module; no token needed)")
def client_js(request: Request) -> Response:
    """Serve the client module."""
    return _serve("govedge-local.js", request)


@router.get("/govedge-local.d.ts", summary="TypeScript declarations of the client")
def client_types(request: Request) -> Response:
    """Serve the client's type declarations."""
    return _serve("govedge-local.d.ts", request)
