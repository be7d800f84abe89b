"""The archives runs fetched from outlet PCs, and the outlets' pinned SSH host keys
(docs/playbook-runs.md, "Archives" and "Host keys").

``read_router`` (viewer): an outlet's archives (names, sizes, SHA-256, the run).
``download_router`` (technician): one archive's file. ``admin_router`` (admin): clear
an outlet's pinned host key, after a PC was really reinstalled; audited
(``playbook.host_key_clear``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from sqlalchemy import select

from fleet_server.api.auth import Authenticated, SecurityDep
from fleet_server.api.deps import SessionDep
from fleet_server.playbooks.run_files import archive_path
from fleet_server.playbooks.tables import OutletAccess, OutletArchive
from fleet_server.security import audit

read_router = APIRouter(tags=["playbooks"])
download_router = APIRouter(tags=["playbooks"])
admin_router = APIRouter(tags=["playbooks"])

OutletId = Annotated[str, PathParam(min_length=1, max_length=64)]
ArchiveId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]


def _archive_json(row: OutletArchive) -> dict[str, Any]:
    return {
        "id": row.id,
        "outlet_id": row.outlet_id,
        "run_id": row.run_id,
        "name": row.name,
        "size": row.size,
        "sha256": row.sha256,
        "created_at": row.created_at.isoformat(),
    }


@read_router.get("/outlets/{outlet_id}/archives")
def list_archives(outlet_id: OutletId, session: SessionDep) -> list[dict[str, Any]]:
    """The archives runs fetched from the outlet PC, newest first."""
    rows = session.scalars(
        select(OutletArchive)
        .where(OutletArchive.outlet_id == outlet_id)
        .order_by(OutletArchive.id.desc())
        .limit(200)
    )
    return [_archive_json(row) for row in rows]


@download_router.get(
    "/outlets/{outlet_id}/archives/{archive_id}",
    response_class=FileResponse,
    responses={200: {"content": {"application/gzip": {}}}},
)
def download_archive(
    outlet_id: OutletId, archive_id: ArchiveId, session: SessionDep, security: SecurityDep
) -> FileResponse:
    """The archive's file (404 when it is not this outlet's or its file is gone)."""
    row = session.get(OutletArchive, archive_id)
    if row is None or row.outlet_id != outlet_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such archive of this outlet")
    path = archive_path(security.settings.playbook_runs_dir, row)
    if not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="the archive's file is gone")
    return FileResponse(path, media_type="application/gzip", filename=row.name)


@admin_router.delete("/outlets/{outlet_id}/host-key")
def clear_host_key(
    outlet_id: OutletId, request: Request, session: SessionDep, principal: Authenticated
) -> dict[str, Any]:
    """Forget the outlet PC's pinned SSH host key: the next run pins the key it finds."""
    row = session.get(OutletAccess, outlet_id)
    if row is None or not row.host_key:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no host key is pinned")
    before = {"host_key": row.host_key}
    row.host_key, row.host_key_pinned_at = None, None
    audit.record(session, actor=principal.name, action="playbook.host_key_clear",
                 target=f"outlet:{outlet_id}", before=before)  # fmt: skip
    session.commit()
    return {"outlet_id": outlet_id, "host_key": None}
