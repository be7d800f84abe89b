"""A file-backed stand-in for a UVC document camera (no ``/dev/video`` needed).

OpenCV opens a video file through the same ``cv2.VideoCapture`` call it uses for
``/dev/videoN``, so the simulator writes a short MJPG/AVI of generated "document"
frames and hands out its path as the device. The demo and tests point the
``uvc_document_camera`` driver at ``device_path``.

    with DocumentCameraSimulator(width=1280, height=960) as cam:
        driver = UvcDocumentCamera(DeviceIdentity(..., address=cam.device_path))
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["DocumentCameraSimulator", "write_document_video"]


def write_document_video(path: Path, *, width: int, height: int, frames: int = 5) -> Path:
    """Write an MJPG AVI of ``frames`` page-like images (white page, black text lines)."""
    # Imported here so that registering the kind does not load OpenCV (docs/performance.md).
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 5.0, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write MJPG video to {path}")
    try:
        for index in range(frames):
            page = np.full((height, width, 3), 235, dtype=np.uint8)
            for line in range(1, 12):
                y = line * height // 13
                cv2.line(page, (width // 10, y), (width * 9 // 10, y), (20, 20, 20), 3)
            cv2.putText(
                page,
                f"page {index}",
                (width // 10, height // 14),
                cv2.FONT_HERSHEY_SIMPLEX,
                max(0.5, width / 800),
                (0, 0, 160),
                2,
            )
            writer.write(page)
    finally:
        writer.release()
    return path


class DocumentCameraSimulator:
    """A generated video file posing as a camera; ``device_path`` is what drivers open."""

    def __init__(self, *, width: int = 1280, height: int = 960, frames: int = 5) -> None:
        self.width = width
        self.height = height
        self.frames = frames
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._path: Path | None = None

    @property
    def device_path(self) -> str:
        """The video file path to use as the camera's device."""
        if self._path is None:
            raise RuntimeError("simulator not started")
        return str(self._path)

    def start(self) -> Self:
        """Write the video; returns ``self``."""
        self._tmp = tempfile.TemporaryDirectory(prefix="govedge-camera-")
        self._path = write_document_video(
            Path(self._tmp.name) / "camera.avi",
            width=self.width,
            height=self.height,
            frames=self.frames,
        )
        return self

    def unplug(self) -> None:
        """Remove the file, as if the camera were unplugged."""
        if self._path is not None:
            self._path.unlink(missing_ok=True)

    def stop(self) -> None:
        """Delete the video; safe twice."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
