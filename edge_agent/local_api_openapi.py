"""``python -m edge_agent.local_api_openapi``: print the local API's OpenAPI document.

The agent serves its local API without FastAPI (``local_api.routing``: FastAPI's
models would be ~8 MiB of every outlet PC's agent), but its routes are declared in
FastAPI's terms. Here, in a process of its own, FastAPI's classes take the place of
``edge_agent.local_api.routing`` before the route modules are imported, so FastAPI
reads the very same declarations and writes the document. The agent runs this once,
when ``/openapi.json`` is first asked for, and keeps the answer (``openapi_route``).

This module lives outside ``edge_agent.local_api`` on purpose: importing anything in
that package imports the routes, which must not happen before the swap.
"""

from __future__ import annotations

import json
import sys
import types
from typing import Any, Final

__all__ = ["DESCRIPTION", "TITLE", "VERSION", "build_document", "main"]

TITLE: Final = "govedge edge agent — local API"
VERSION: Final = "1.0.0"
DESCRIPTION: Final = """\
The outlet agent's API for the clerk's own web app, on **127.0.0.1 only**.

Every request needs `Authorization: Bearer TOKEN` (from `edge-agent apps add`); a
browser's `Origin` must be one registered for that app. Errors are
`{"error": code, "message": ..., "hint": what the clerk should do}`.
See docs/local-api.md.
"""
ROUTING: Final = "edge_agent.local_api.routing"


def _fastapi_routing() -> types.ModuleType:
    """A stand-in for ``local_api.routing`` made of FastAPI's own classes."""
    import fastapi
    from fastapi.exceptions import RequestValidationError
    from fastapi.security import HTTPBearer

    def starlette_routes(router: Any) -> Any:
        raise RuntimeError("the OpenAPI document's process serves nothing")

    module = types.ModuleType(ROUTING, "FastAPI's classes, for the document only")
    for name in ("APIRouter", "Body", "Depends", "Header", "Path", "Query"):
        setattr(module, name, getattr(fastapi, name))
    module.HTTPBearer = HTTPBearer  # type: ignore[attr-defined]
    module.RequestInvalid = RequestValidationError  # type: ignore[attr-defined]
    module.starlette_routes = starlette_routes  # type: ignore[attr-defined]
    return module


def build_document() -> dict[str, Any]:
    """The document FastAPI writes for the local API's routes (call in a fresh process)."""
    if ROUTING in sys.modules:
        raise RuntimeError("the local API's routes are loaded already: run in a fresh process")
    from fastapi import FastAPI

    sys.modules[ROUTING] = _fastapi_routing()
    from edge_agent.local_api import client_files, console_page, hall_pages
    from edge_agent.local_api.routes import v1_router

    app = FastAPI(title=TITLE, version=VERSION, description=DESCRIPTION)
    for router in (v1_router, client_files.router, hall_pages.router, console_page.router):
        app.include_router(router)  # type: ignore[arg-type]
    document: dict[str, Any] = app.openapi()
    return document


def main() -> None:
    """Write the document as JSON to stdout."""
    json.dump(build_document(), sys.stdout, ensure_ascii=False, separators=(",", ":"))


if __name__ == "__main__":
    main()
