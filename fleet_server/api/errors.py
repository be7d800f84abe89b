"""The API's documented error answers and the row-id path type, shared by every router.

FastAPI documents only 200 and its own 422 by default; our routes also answer 400, 401,
403, 404, 409 and a 422 whose ``detail`` is a sentence, and the OpenAPI document must
say so (schemathesis checks every answer against it); every route answers 503 while
the database is unreachable (fleet_server.db_outage). Row ids are bounded to 64-bit
signed integers so an absurd id is a 422, never a database overflow (a 500).

A request that fails validation is answered 422 with FastAPI's list of field errors,
but without the rejected ``input`` (FastAPI's default sends it back whole: a follow-up
note names a citizen) and with the location's keys passed through ``field_path``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from govedge_wire.pii import field_path

__all__ = ["ERROR_RESPONSES", "RATE_LIMITED", "ErrorPublic", "RowId", "validation_failed"]

RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class ErrorPublic(BaseModel):
    """An error answer: ``detail`` is a sentence, or FastAPI's list of field errors."""

    model_config = ConfigDict(extra="allow")

    detail: str | list[dict[str, Any]]


_ERROR: dict[str, Any] = {"model": ErrorPublic}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _ERROR | {"description": "malformed request"},
    401: _ERROR | {"description": "no valid token"},
    403: _ERROR | {"description": "the token's role may not do this"},
    404: _ERROR | {"description": "not found"},
    409: _ERROR | {"description": "conflicts with the current state"},
    413: _ERROR | {"description": "the request body is over this route's limit"},
    422: _ERROR | {"description": "invalid input"},
    503: _ERROR | {"description": "the database cannot be reached (problem+json); see Retry-After"},
}
# Endpoints without an operator token also answer this (fleet_server.api.limits).
RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: _ERROR | {"description": "too many calls from this address; see Retry-After"},
}


async def validation_failed(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each field and what is wrong with it, never the value that was sent."""
    if not isinstance(exc, RequestValidationError):  # registered for that class only
        raise exc
    problems = [
        {
            "type": str(e.get("type", "")),
            "loc": field_path(e.get("loc", ())),
            "msg": str(e.get("msg", "")),
        }
        for e in exc.errors()
        if isinstance(e, dict)
    ]
    return JSONResponse({"detail": problems}, status_code=422)
