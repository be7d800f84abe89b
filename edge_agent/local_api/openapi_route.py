"""``GET /openapi.json``: the local API's document, written once by a child process.

The agent does not load FastAPI (``routing``), so the document comes from
``python -m edge_agent.local_api_openapi``, which lets FastAPI read the same route
declarations. It runs the first time the document is asked for (~1-2 s) and the answer
is kept for the agent's life; its memory ends with the child. The path needs the token,
like every route but the public files (``security.LocalGuard``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edge_agent.local_api.errors import ApiError

__all__ = ["OPENAPI_PATH", "OpenApiDocument"]

log = logging.getLogger(__name__)

OPENAPI_PATH: Final = "/openapi.json"
_PACKAGE_ROOT: Final = str(Path(__file__).resolve().parents[2])
_TIMEOUT_S: Final = 60.0


class OpenApiDocument:
    """The document's JSON, generated on first use and kept."""

    def __init__(self) -> None:
        self._body: bytes | None = None
        self._lock = asyncio.Lock()

    def route(self) -> Route:
        """The Starlette route answering ``GET /openapi.json``."""

        async def openapi(request: Request) -> Response:
            return Response(await self.body(), media_type="application/json")

        return Route(OPENAPI_PATH, openapi, methods=["GET"])

    async def body(self) -> bytes:
        """The document as JSON bytes (503 ``openapi_unavailable`` if it cannot be made)."""
        async with self._lock:
            if self._body is None:
                self._body = await _generate()
            return self._body


async def _generate() -> bytes:
    env = dict(os.environ)
    # The service runs with PYTHONOPTIMIZE=2 (no docstrings); FastAPI takes each route's
    # description from its docstring, so the document's child runs without it.
    env.pop("PYTHONOPTIMIZE", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edge_agent.local_api_openapi",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        async with asyncio.timeout(_TIMEOUT_S):
            out, err = await process.communicate()
    except TimeoutError:
        out, err = b"", b"timed out"
    finally:
        if process.returncode is None:  # timed out, or the request was cancelled
            process.kill()
            await process.wait()
    try:
        if process.returncode == 0:
            json.loads(out)
            return out
    except ValueError:
        err = b"not JSON"
    said = err.decode("utf-8", "replace").strip().splitlines()
    log.warning(
        "local API: the OpenAPI document could not be written (exit %s): %s",
        process.returncode,
        said[-1][:300] if said else "no message",
    )
    raise ApiError(
        503,
        "openapi_unavailable",
        "the agent could not write its OpenAPI document",
        hint="try again; if it keeps failing, run 'python -m edge_agent.local_api_openapi'",
    )
