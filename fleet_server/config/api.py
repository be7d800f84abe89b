"""``/api/v1/config``: scope documents, their versions, diffs, rollback, dry runs, and
each outlet's config and drift (docs/config.md, "The config API").

One router; ``app.py`` lets viewers read and operators write. Writes name the version
they were made against in ``If-Match`` (412 when stale, 428 when missing on an
existing scope); the comment and ``closed_hours_only`` go in the query string (a header
cannot carry Chinese text). Every stored change is audited and wakes the reconciler
(``AppState.config_changed``) after its commit.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Depends,
    Header,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
    status,
)
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from fleet_server.api.auth import Authenticated
from fleet_server.api.deps import AppStateDep, SessionDep
from fleet_server.api.errors import ErrorPublic
from fleet_server.api.scope import ScopeDep
from fleet_server.config import dryrun, outlet_view, store
from fleet_server.config.diff import as_json, diff_documents
from fleet_server.config.store import (
    MAX_DOCUMENT_BYTES,
    ConfigStoreError,
    DocumentTooLarge,
    InvalidDocument,
    InvalidScope,
    NotFound,
    PreconditionRequired,
    VersionConflict,
    VersionRow,
)
from fleet_server.security import audit
from fleet_server.security.scope import Scope as UserScope
from govedge_wire.config import Scope, config_hash

_CONFLICT = {"model": ErrorPublic}
router = APIRouter(
    tags=["config"],
    responses={
        412: _CONFLICT | {"description": "If-Match names a version that is no longer current"},
        428: _CONFLICT | {"description": "an existing scope was written without If-Match"},
    },
)
# The document as the body of PUT: any JSON object; the server validates its meaning.
_DOCUMENT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}
_VALIDATE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["scope", "document"],
                    "properties": {"scope": {"type": "string"}, "document": {"type": "object"}},
                }
            }
        },
    }
}
Comment = Annotated[str | None, Query(max_length=1024)]
IfMatch = Annotated[str | None, Header(alias="If-Match")]
VersionNo = Annotated[int, Query(ge=1, le=2**31 - 1)]


class RollbackIn(BaseModel):
    """Roll a scope back to one of its versions."""

    model_config = ConfigDict(extra="forbid")

    version: Annotated[int, Field(ge=1, le=2**31 - 1)]
    comment: Annotated[str, Field(max_length=1024)] | None = None
    closed_hours_only: bool = False


def _refusal(exc: ConfigStoreError) -> HTTPException | JSONResponse:
    """The HTTP answer to one of the store's refusals."""
    if isinstance(exc, InvalidDocument):
        return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=exc.errors)
    if isinstance(exc, InvalidScope):
        return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc))
    if isinstance(exc, DocumentTooLarge):
        return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=str(exc))
    if isinstance(exc, NotFound):
        return HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc))
    if isinstance(exc, VersionConflict):
        body = {"detail": str(exc), "current_version": exc.current}
        return JSONResponse(body, status_code=status.HTTP_412_PRECONDITION_FAILED)
    if isinstance(exc, PreconditionRequired):
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_428_PRECONDITION_REQUIRED)
    raise exc  # pragma: no cover - every refusal is mapped above


def _answer(exc: ConfigStoreError) -> JSONResponse:
    answer = _refusal(exc)
    if isinstance(answer, HTTPException):
        raise answer
    return answer


def _scope(text: str) -> Scope:
    try:
        return store.check_scope(text)
    except InvalidScope as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None


def reaches(session: Session, mine: UserScope, text: str) -> bool:
    """A config layer can apply to an outlet in the user's scope: global and kind layers
    can, a region layer inside or above the scope, an outlet layer of an outlet inside."""
    if mine.whole_fleet:
        return True
    layer = _scope(text)
    if layer.level == "outlet":
        return mine.admits_outlet(session, layer.value)
    if layer.level == "region":
        return any(layer.value.startswith(p) or p.startswith(layer.value) for p in mine.prefixes)
    return True


def _readable(session: Session, mine: UserScope, text: str) -> Scope:
    """The layer, or 404 when it cannot apply to the user's outlets (as if it were not)."""
    if not reaches(session, mine, text):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"config scope {text!r} not found")
    return _scope(text)


def _writable(session: Session, mine: UserScope, text: str) -> Scope:
    """The layer, or 403 with the reason when writing it would reach outlets outside the
    user's scope: a region-scoped user writes region layers inside their regions and
    their outlets' layers, never global or kind layers (those reach the whole fleet)."""
    layer = _scope(text)
    if mine.whole_fleet:
        return layer
    inside = (layer.level == "region" and layer.value.startswith(mine.prefixes)) or (
        layer.level == "outlet" and mine.admits_outlet(session, layer.value)
    )
    if not inside:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"config scope {text!r} reaches outlets outside your region scope "
            f"({' '.join(mine.prefixes)})",
        )
    return layer


def scoped_drift(session: Session, mine: UserScope) -> list[dict[str, Any]]:
    """The drift list, only the user's outlets (the API and the UI's config page)."""
    rows = outlet_view.drift(session)
    inside = mine.outlet_ids(session)
    return [row for row in rows if inside is None or row["outlet_id"] in inside]


def _if_match(value: str | None) -> int | None:
    """The version in ``If-Match`` (``3`` or ``"3"``); 400 for anything else."""
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not (text.isascii() and text.isdigit()) or len(text) > 10:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail="If-Match must be the version number your change was made against (0: new)",
        )
    return int(text)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


async def _json_body(request: Request, limit: int) -> object:
    """The request body parsed as JSON, read no further than ``limit`` bytes (else 413)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            store.REFUSALS["too_large"] += 1
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                detail=f"a config document may be at most {MAX_DOCUMENT_BYTES} bytes",
            )
    try:
        return json.loads(bytes(body), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        store.REFUSALS["invalid_document"] += 1
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"the body is not JSON: {exc}"
        ) from None


async def document_body(request: Request) -> object:
    """PUT's body: the scope document."""
    return await _json_body(request, MAX_DOCUMENT_BYTES)


async def validate_body(request: Request) -> object:
    """The dry run's body: ``{"scope", "document"}``."""
    return await _json_body(request, MAX_DOCUMENT_BYTES + 4096)


def _current(row: VersionRow) -> dict[str, Any]:
    return row.as_json() | {"hash": config_hash(row.document)}


def _audit_write(session: Session, actor: str, action: str, row: VersionRow, before: int) -> None:
    # The document's hash, not the document: a free-text comment or value never lands here.
    after = {
        "version": row.version,
        "hash": config_hash(row.document),
        "closed_hours_only": row.closed_hours_only,
        "rolled_back_to": row.rolled_back_to,
    }
    audit.record(
        session, actor=actor, action=action, target=f"config:{row.scope}",
        before={"version": before}, after=after,
    )  # fmt: skip


@router.get("/config")
def list_scopes(session: SessionDep, mine: ScopeDep) -> list[dict[str, Any]]:
    """Every scope with its current version, author, time and comment (a region-scoped
    user: those that can apply to their outlets)."""
    return [row for row in store.list_scopes(session) if reaches(session, mine, row["scope"])]


@router.get("/config/drift")
def read_drift(session: SessionDep, mine: ScopeDep) -> list[dict[str, Any]]:
    """Outlets not in sync with their desired config, the longest-standing first."""
    return scoped_drift(session, mine)


@router.post("/config/validate", openapi_extra=_VALIDATE_BODY, response_model=None)
def validate(
    state: AppStateDep,
    session: SessionDep,
    mine: ScopeDep,
    body: Annotated[object, Depends(validate_body)],
) -> dict[str, Any] | JSONResponse:
    """Dry run: 422 with the problems, or which outlets' effective configs would change."""
    if not isinstance(body, dict) or set(body) != {"scope", "document"}:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail='the body must be {"scope": "...", "document": {...}}',
        )
    if not isinstance(body["scope"], str):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="scope must be text")
    scope = _writable(session, mine, body["scope"])
    try:
        document = store.check_document(body["document"], state.check_alert_override)
    except ConfigStoreError as exc:
        return _answer(exc)
    return dryrun.dry_run(session, scope, document)


@router.get("/config/{scope}")
def read_scope(
    session: SessionDep, mine: ScopeDep, scope: str, response: Response
) -> dict[str, Any]:
    """The scope's current document, version, author and time (``ETag``: the version)."""
    try:
        row = store.get_version(session, _readable(session, mine, scope))
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    response.headers["ETag"] = f'"{row.version}"'
    return _current(row)


@router.put("/config/{scope}", openapi_extra=_DOCUMENT_BODY, response_model=None)
def put_scope(
    state: AppStateDep,
    session: SessionDep,
    principal: Authenticated,
    mine: ScopeDep,
    scope: str,
    body: Annotated[object, Depends(document_body)],
    if_match: IfMatch = None,
    comment: Comment = None,
    closed_hours_only: bool = False,
) -> dict[str, Any] | JSONResponse:
    """Store a new version of the scope's document (If-Match: the version it replaces)."""
    parsed = _writable(session, mine, scope)
    expected = _if_match(if_match)
    try:
        document = store.check_document(body, state.check_alert_override)
        row = store.put_document(
            session, parsed, document, expected=expected, author=principal.name,
            comment=comment, closed_hours_only=closed_hours_only,
        )  # fmt: skip
    except ConfigStoreError as exc:
        session.rollback()
        return _answer(exc)
    _audit_write(session, principal.name, "config.put", row, row.version - 1)
    session.commit()
    state.config_changed()
    return _current(row)


@router.get("/config/{scope}/versions")
def read_versions(session: SessionDep, mine: ScopeDep, scope: str) -> list[dict[str, Any]]:
    """Every version of the scope, newest first (without the documents)."""
    parsed = _readable(session, mine, scope)
    try:
        return [row.summary() for row in store.list_versions(session, parsed)]
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None


@router.get("/config/{scope}/versions/{version}")
def read_version(
    session: SessionDep,
    mine: ScopeDep,
    scope: str,
    version: Annotated[int, Path(ge=1, le=2**31 - 1)],
) -> dict[str, Any]:
    """One version of the scope, with its document."""
    parsed = _readable(session, mine, scope)
    try:
        return _current(store.get_version(session, parsed, version))
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None


@router.get("/config/{scope}/diff")
def read_diff(
    session: SessionDep,
    mine: ScopeDep,
    scope: str,
    from_version: Annotated[int, Query(alias="from", ge=1, le=2**31 - 1)],
    to_version: Annotated[int, Query(alias="to", ge=1, le=2**31 - 1)],
) -> dict[str, Any]:
    """What changed from one version of the scope to another: ``{path, op, from, to}``."""
    parsed = _readable(session, mine, scope)
    try:
        old = store.get_version(session, parsed, from_version)
        new = store.get_version(session, parsed, to_version)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    changes = [as_json(change) for change in diff_documents(old.document, new.document)]
    return {"scope": str(parsed), "from": from_version, "to": to_version, "changes": changes}


@router.post("/config/{scope}/rollback", response_model=None)
def post_rollback(
    state: AppStateDep,
    session: SessionDep,
    principal: Authenticated,
    mine: ScopeDep,
    scope: str,
    body: RollbackIn,
    if_match: IfMatch = None,
) -> dict[str, Any] | JSONResponse:
    """A new version carrying version ``body.version``'s document (If-Match: the current)."""
    parsed = _writable(session, mine, scope)
    expected = _if_match(if_match)
    try:
        row = store.rollback(
            session, parsed, body.version, expected=expected, author=principal.name,
            comment=body.comment, closed_hours_only=body.closed_hours_only,
        )  # fmt: skip
    except ConfigStoreError as exc:
        session.rollback()
        return _answer(exc)
    _audit_write(session, principal.name, "config.rollback", row, row.version - 1)
    session.commit()
    state.config_changed()
    return _current(row)


@router.get("/outlets/{outlet_id}/config")
def read_outlet_config(session: SessionDep, outlet_id: str) -> dict[str, Any]:
    """Desired vs reported, the effective config now, status, and each value's scope."""
    view = outlet_view.outlet_view(session, outlet_id)
    if view is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"outlet {outlet_id} not found")
    return view
