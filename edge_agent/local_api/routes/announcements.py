"""``/v1/announcements/{id}.wav``: the spoken announcement of a window operation."""

from __future__ import annotations

from typing import Annotated

from starlette.responses import FileResponse

from edge_agent.local_api.deps import LocalDep
from edge_agent.local_api.errors import ApiError, error_responses
from edge_agent.local_api.routing import APIRouter, Path

router = APIRouter(prefix="/announcements", tags=["queue"])


@router.get(
    "/{announcement_id}.wav",
    response_class=FileResponse,
    responses={
        **error_responses(404),
        200: {"description": "RIFF/WAVE audio", "content": {"audio/wav": {}}},
    },
)
async def get_announcement(
    announcement_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")], local: LocalDep
) -> FileResponse:
    """The WAV of an announcement (the newest 50 are kept); play it in the hall."""
    path = local.announcements.path_for(announcement_id)
    if not path.is_file():
        raise ApiError(404, "not_found", "that announcement is gone", hint="call again")
    return FileResponse(path, media_type="audio/wav", headers={"Cache-Control": "no-store"})
