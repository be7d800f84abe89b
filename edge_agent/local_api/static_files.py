"""Answer a file shipped with the agent (the JS client, the console page) with an ETag.

The ETag is a hash of the content, so after an agent update the browser's revalidation
(``Cache-Control: no-cache``) fetches the new file and otherwise gets 304.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["file_response"]


@cache
def _load(path: Path) -> tuple[bytes, str]:
    body = path.read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def file_response(
    path: Path, media_type: str, request: Request, headers: dict[str, str]
) -> Response:
    """``path``'s bytes (or 304 when the request's ``If-None-Match`` has its ETag)."""
    body, etag = _load(path)
    headers = {"ETag": etag, "Cache-Control": "no-cache", **headers}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)
