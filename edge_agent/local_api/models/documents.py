"""Wire shapes of ``/v1/documents``: a still captured by the document camera."""

from __future__ import annotations

from pydantic import BaseModel

from edge_agent.local_api.models.common import DeviceId, StrictIn, examples

__all__ = ["DocumentCaptureCreate", "DocumentPublic"]


class DocumentCaptureCreate(StrictIn):
    """Which camera (default: the first ready one)."""

    device_id: DeviceId | None = None


class DocumentPublic(BaseModel):
    """A captured still; reference it in a submission by ``document_id`` (kept 30 min)."""

    model_config = examples(
        {
            "document_id": "doc-3f2a9c0e1b7d4a5c6e8f9a0b",
            "device_id": "uvc-document-camera.byid-usb-eloam",
            "width": 2592,
            "height": 1944,
            "size": 812345,
            "jpeg_base64": "/9j/4AAQSkZJRgABAQ…",
        }
    )

    document_id: str
    device_id: str
    width: int
    height: int
    size: int
    jpeg_base64: str
