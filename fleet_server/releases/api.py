"""``/api/v1/releases``: upload, list, show, mark bad, and download agent releases.

``write_router`` (operator): ``POST /releases`` takes the artifact as the raw request
body (``application/octet-stream``), streamed to disk, with ``version``, ``file_name``
and ``notes`` as query parameters; ``POST /releases/{version}/bad``. ``read_router``
(viewer): the list and one release with its signed manifest. ``download_router``: the
manifest and the artifact (with ``Range``) for a viewer or an outlet's proof
(``outlet_auth``). Refused uploads are counted by reason (``refused``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import ClientDisconnect

from fleet_server.api.auth import Authenticated, SecurityDep
from fleet_server.api.deps import AppStateDep, SessionDep
from fleet_server.releases import store
from fleet_server.releases.artifacts import ArtifactRefused, kind_for, normal_version
from fleet_server.releases.outlet_auth import viewer_or_outlet
from fleet_server.releases.tables import Release
from govedge_wire.releases import FILE_NAME_PATTERN, ReleaseKind, SignedManifest

logger = logging.getLogger(__name__)

write_router = APIRouter(prefix="/releases", tags=["releases"])
read_router = APIRouter(prefix="/releases", tags=["releases"])
download_router = APIRouter(prefix="/releases", tags=["releases"])

_NAME_HELP = "e.g. govedge-1.2.0-py3-none-any.whl, or a bundle .tar.gz/.zip"
VersionPath = Annotated[str, Path(min_length=1, max_length=64)]


class ReleasePublic(BaseModel):
    """One release as the API shows it."""

    model_config = ConfigDict(frozen=True)

    version: str
    file_name: str
    kind: ReleaseKind
    size: int
    sha256: str
    created_at: datetime
    created_by: str
    notes: str | None
    bad: bool
    bad_at: datetime | None
    bad_by: str | None
    bad_reason: str | None
    manifest: SignedManifest


class BadRequest(BaseModel):
    """Why a release is bad (kept with who and when)."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(min_length=1, max_length=1000)]


def _public(row: Release) -> ReleasePublic:
    return ReleasePublic(
        version=row.version,
        file_name=row.file_name,
        kind=row.kind,
        size=row.size,
        sha256=row.sha256,
        created_at=row.created_at,
        created_by=row.created_by,
        notes=row.notes,
        bad=row.bad_at is not None,
        bad_at=row.bad_at,
        bad_by=row.bad_by,
        bad_reason=row.bad_reason,
        manifest=SignedManifest.model_validate(row.manifest),
    )


def _refused_counts(request: Request) -> Counter[str]:
    counts: Counter[str] = request.app.state.metrics.release_refused
    return counts


def _http(exc: store.ReleaseError) -> HTTPException:
    return HTTPException(exc.status, detail=str(exc))


@write_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ReleasePublic,
    responses={200: {"model": ReleasePublic, "description": "the same file again: as stored"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                "format": "binary"}}},
        }
    },
)  # fmt: skip
async def add_release(
    request: Request,
    principal: Authenticated,
    security: SecurityDep,
    state: AppStateDep,
    version: Annotated[str, Query(min_length=1, max_length=64, description="PEP 440")],
    file_name: Annotated[str, Query(pattern=f"^{FILE_NAME_PATTERN}$", description=_NAME_HELP)],
    notes: Annotated[str | None, Query(max_length=2000)] = None,
) -> Any:
    """Store an agent build (wheel or bundle) sent as the body; 201, or 200 when this
    version already holds the same file; 409 when it holds another; 422 when the file is
    not a govedge build of ``version`` (nothing stored)."""
    refused = _refused_counts(request)
    try:
        normal_version(version)
        kind_for(file_name)
    except ArtifactRefused as exc:  # refused before a byte of the body is read
        refused[exc.reason] += 1
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    settings = security.settings
    upload = await asyncio.to_thread(store.Upload, settings)
    try:
        async for chunk in request.stream():
            if chunk:
                await asyncio.to_thread(upload.write, chunk)
        await asyncio.to_thread(upload.finish)
        added = await asyncio.to_thread(
            store.add_release,
            state.sessions,
            settings,
            upload,
            version=version,
            file_name=file_name,
            notes=notes,
            actor=principal.name,
        )
    except ArtifactRefused as exc:
        refused[exc.reason] += 1
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    except ClientDisconnect:  # a bad link: nothing stored, the client uploads again
        refused["broken_off"] += 1
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="the upload broke off") from None
    except store.ReleaseError as exc:
        refused["too_large" if isinstance(exc, store.ReleaseTooLarge) else "conflict"] += 1
        raise _http(exc) from None
    finally:
        await asyncio.to_thread(upload.discard)
    body = _public(added.release).model_dump(mode="json")
    return JSONResponse(body, status_code=201 if added.created else 200)


@write_router.post("/{version}/bad")
def mark_bad(
    version: VersionPath, body: BadRequest, session: SessionDep, principal: Authenticated
) -> ReleasePublic:
    """Mark a release bad: no new install may start from it (the first mark is kept)."""
    try:
        row = store.mark_bad(session, version, reason=body.reason, actor=principal.name)
    except store.ReleaseError as exc:
        raise _http(exc) from None
    return _public(row)


@read_router.get("")
def list_releases(session: SessionDep) -> list[ReleasePublic]:
    """Every release, newest first."""
    return [_public(row) for row in store.list_releases(session)]


@read_router.get("/{version}")
def read_release(version: VersionPath, session: SessionDep) -> ReleasePublic:
    """One release with its signed manifest."""
    try:
        return _public(store.get_release(session, version))
    except store.ReleaseError as exc:
        raise _http(exc) from None


Downloader = Annotated[str, Depends(viewer_or_outlet)]


@download_router.get("/{version}/manifest")
def read_manifest(version: VersionPath, session: SessionDep, caller: Downloader) -> SignedManifest:
    """The signed manifest alone (what an agent verifies before installing)."""
    try:
        return SignedManifest.model_validate(store.get_release(session, version).manifest)
    except store.ReleaseError as exc:
        raise _http(exc) from None


@download_router.get(
    "/{version}/artifact",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the whole file"},
        206: {"content": {"application/octet-stream": {}}, "description": "the range asked"},
        416: {"description": "the range is outside the file"},
    },
)
def read_artifact(
    version: VersionPath, session: SessionDep, security: SecurityDep, caller: Downloader
) -> FileResponse:
    """The artifact; ``Range: bytes=N-`` resumes a download (206), ``ETag`` is its
    SHA-256 (``If-Range`` with it is honoured)."""
    try:
        row = store.get_release(session, version)
    except store.ReleaseError as exc:
        raise _http(exc) from None
    path = store.artifact_path(security.settings, row)
    if not path.is_file():
        logger.error("release %s: file %s is missing", row.version, path)
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="the release's file is missing")
    logger.info("release %s downloaded by %s", row.version, caller)
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=row.file_name,
        headers={"ETag": f'"{row.sha256}"', "Accept-Ranges": "bytes"},
    )
