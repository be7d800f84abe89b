"""``/v1/documents/capture``: a still from the document camera (高拍仪).

The capture is kept in memory for a while (``document_id``) so a submission can
reference it instead of uploading the bytes again; it never touches the disk here.
"""

from __future__ import annotations

import base64
from typing import Annotated, Final, Literal

from starlette.responses import Response

from edge_agent.devices.document_camera import DocumentCamera
from edge_agent.local_api.deps import LocalDep
from edge_agent.local_api.errors import error_responses
from edge_agent.local_api.models import DocumentCaptureCreate, DocumentPublic
from edge_agent.local_api.routing import APIRouter, Body, Query

router = APIRouter(prefix="/documents", tags=["documents"])

_HINT: Final = "plug the document camera in and close the vendor's own camera program"


@router.post(
    "/capture",
    response_model=DocumentPublic,
    responses={
        **error_responses(404, 409, 503, 504),
        200: {
            "description": "JSON with base64, or the JPEG itself with ?format=jpeg "
            "(its document_id in the X-Document-Id header)",
            "content": {"image/jpeg": {}},
        },
    },
)
async def capture_document(
    local: LocalDep,
    body: Annotated[DocumentCaptureCreate | None, Body()] = None,
    output: Annotated[Literal["json", "jpeg"], Query(alias="format")] = "json",
) -> DocumentPublic | Response:
    """Capture one still as JPEG at the camera's configured resolution."""
    request = body or DocumentCaptureCreate()
    camera = local.find_driver(
        DocumentCamera, device_id=request.device_id, what="document camera", hint=_HINT
    )
    still = await camera.capture()
    doc = local.documents.add(still.jpeg, width=still.width, height=still.height)
    if output == "jpeg":
        return Response(
            content=still.jpeg,
            media_type="image/jpeg",
            headers={"X-Document-Id": doc.document_id, "Cache-Control": "no-store"},
        )
    return DocumentPublic(
        document_id=doc.document_id,
        device_id=camera.device_id,
        width=still.width,
        height=still.height,
        size=len(still.jpeg),
        jpeg_base64=base64.b64encode(still.jpeg).decode("ascii"),
    )
