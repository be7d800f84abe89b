"""A file-backed stand-in for a UVC document camera (no ``/dev/video`` needed).

OpenCV opens a video file through the same ``cv2.VideoCapture`` call it uses for
``/dev/videoN``, so the simulator writes a short MJPG/AVI of generated "document"
frames and hands out its path as the device. The demo and tests point the
``uvc_document_camera`` driver at ``device_path``.

    with DocumentCameraSimulator(width=1280, height=960) as cam:
        driver = UvcDocumentCamera(DeviceIdentity(..., address=cam.device_path))
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

from edge_agent.devices.document_camera import video_file
from edge_agent.devices.document_camera.video_file import write_document_video

__all__ = ["DocumentCameraSimulator", "write_document_video"]


class DocumentCameraSimulator:
    """A generated video file posing as a camera; ``device_path`` is what drivers open."""

    def __init__(
        self,
        *,
        width: int = 1280,
        height: int = 960,
        frames: int = 5,
        separate_process: bool = False,
    ) -> None:
        self.width = width
        self.height = height
        self.frames = frames
        # True: a child process writes the video, so OpenCV's encoder never loads into
        # this process (``--simulate``: the agent then carries only what a real camera
        # costs it, docs/performance.md).
        self.separate_process = separate_process
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
        path = Path(self._tmp.name) / "camera.avi"
        if self.separate_process:
            _write_in_child(path, width=self.width, height=self.height, frames=self.frames)
            self._path = path
        else:
            self._path = write_document_video(
                path, width=self.width, height=self.height, frames=self.frames
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


def _write_in_child(path: Path, *, width: int, height: int, frames: int) -> None:
    """``write_document_video`` in a child interpreter that imports nothing of the agent."""
    script = video_file.__file__
    result = subprocess.run(
        [sys.executable, script, str(path), str(width), str(height), str(frames)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the camera video was not written: {result.stderr.strip()[-500:]}")
