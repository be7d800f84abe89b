"""Driver settings of kind ``document_camera``: what its profile (and local config) may set."""

from __future__ import annotations

from pydantic import Field

from edge_agent.devices.settings import DriverSettings, seconds


class DocumentCameraSettings(DriverSettings):
    """Settings keys of ``uvc_document_camera``."""

    device: str | None = Field(
        default=None,
        min_length=1,
        description="/dev/videoN, a camera index or a video file; default: the device node",
    )
    width: int = Field(default=2592, ge=16, le=10000, description="still width, pixels")
    height: int = Field(default=1944, ge=16, le=10000, description="still height, pixels")
    jpeg_quality: int = Field(default=90, ge=1, le=100, description="JPEG quality 1-100")
    warmup_frames: int = Field(
        default=2, ge=0, le=30, description="frames dropped while exposure settles"
    )
    capture_timeout: float = seconds(10.0, "one still, warm-up included", most=120)
    open_timeout: float = seconds(10.0, "opening the camera", most=120)
    busy_timeout: float = seconds(2.0, "how long a second capture waits", most=120)
    idle_release: float = Field(
        default=60.0,
        ge=0,
        le=86400,
        description="seconds without a still after which the camera and its capture "
        "process are released (the next still opens it again); 0: keep it open",
    )
