"""Blocking still capture with OpenCV: one code path for UVC cameras, files and sequences.

``cv2.VideoCapture`` opens ``/dev/videoN`` (V4L2), an index, a video file or an image
sequence pattern (``frame_%03d.png``) alike, so tests feed the very code a document
camera uses. Each function blocks. ``CameraSource`` runs in the camera's capture
process (``worker.py``), never in the agent, which keeps only the claim on a source
(``claim``/``unclaim``, from ``capture_process.py``). Errors come out as
``CameraError`` with a ``kind`` the driver maps to its error tree.
"""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.devices.document_camera.heap_release import release_freed_heap

if TYPE_CHECKING:
    import cv2
    import numpy as np
    import numpy.typing as npt

    Frame = npt.NDArray[np.uint8]

__all__ = ["CameraError", "CameraSource", "Still", "claim", "other_holders", "unclaim"]

# Sources this process has open. A UVC camera streams to one program at a time; the
# claim makes a second driver on the same camera fail fast with "busy" instead of
# fighting over the stream.
_CLAIMS: set[str] = set()
_CLAIMS_LOCK = threading.Lock()


class CameraError(Exception):
    """A capture failed; ``kind`` is ``"not_found"``, ``"busy"`` or ``"failed"``."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Still:
    """One encoded still: JPEG bytes and the size of the image inside."""

    jpeg: bytes
    width: int
    height: int
    native_width: int
    native_height: int


def _is_device_node(source: str) -> bool:
    try:
        return stat.S_ISCHR(os.stat(source).st_mode)
    except OSError:
        return False


def other_holders(path: str) -> list[int]:
    """Pids of other processes holding ``path`` open (Linux ``/proc``; like ``fuser``)."""
    target = os.path.realpath(path)
    me = os.getpid()
    holders: list[int] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == me:
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    holders.append(int(proc.name))
                    break
            except OSError:
                continue
    return holders


def claim(source: str, current: str | None = None) -> str:
    """Claim ``source`` for one driver of this process; the claim's key.

    ``CameraError`` not_found if the path does not exist, busy if another driver of this
    process holds it (``current``: the caller's own claim, which it may renew).
    """
    is_index = source.isdigit()
    if not (is_index or "%" in source) and not os.path.exists(source):
        raise CameraError(f"{source} does not exist", kind="not_found")
    key = os.path.realpath(source) if not is_index else f"index:{source}"
    with _CLAIMS_LOCK:
        if key in _CLAIMS and current != key:
            raise CameraError(f"{source} is in use by another driver", kind="busy")
        _CLAIMS.add(key)
    return key


def unclaim(key: str | None) -> None:
    """Give up a claim ``claim`` returned; None: nothing to give up."""
    if key is not None:
        with _CLAIMS_LOCK:
            _CLAIMS.discard(key)


class CameraSource:
    """An opened capture source; ``grab_still`` returns a JPEG at the wanted size."""

    def __init__(self, source: str, *, width: int, height: int) -> None:
        self.source = source
        self.width = width
        self.height = height
        self._capture: cv2.VideoCapture | None = None
        self._claim: str | None = None
        # One OpenCV call on the capture at a time, across worker threads: a cancelled
        # capture task leaves its thread inside ``read()``, and a ``release()`` from the
        # close that follows (shutdown, unplug) would free the capture under it (the
        # agent died with SIGSEGV stopping while its camera probe ran).
        self._io = threading.Lock()

    def open(self) -> None:
        """Open the source; ``CameraError`` not_found / busy / failed."""
        self._claim = claim(self.source, self._claim)
        try:
            self._capture = self._open_capture(
                is_index=self.source.isdigit(), device=_is_device_node(self.source)
            )
        except BaseException:
            self._release_claim()
            raise

    def _release_claim(self) -> None:
        unclaim(self._claim)
        self._claim = None

    def _open_capture(self, *, is_index: bool, device: bool) -> cv2.VideoCapture:
        # OpenCV and NumPy cost ~60 MiB; they load when a camera opens, never before.
        import cv2

        capture = (
            cv2.VideoCapture(int(self.source), cv2.CAP_V4L2)
            if is_index
            else cv2.VideoCapture(self.source, cv2.CAP_V4L2 if device else cv2.CAP_ANY)
        )
        if not capture.isOpened():
            capture.release()
            if device and other_holders(self.source):
                raise CameraError(f"{self.source} is in use by another program", kind="busy")
            raise CameraError(f"{self.source} cannot be opened as a camera", kind="not_found")
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        return capture

    def close(self) -> None:
        """Release the source and its claim; safe twice. Waits for a grab in progress."""
        with self._io:
            if self._capture is not None:
                self._capture.release()
                self._capture = None
        self._release_claim()

    def _read(self, *, warmup: int) -> Frame | None:
        import numpy as np

        capture = self._capture
        if capture is None:
            return None
        frame: Frame | None = None
        for _ in range(warmup + 1):
            ok, image = capture.read()
            if not ok:
                return None
            frame = np.asarray(image, dtype=np.uint8)
        return frame

    def grab_still(self, *, quality: int, warmup: int = 0) -> Still:
        """Read a frame (reopening once if the stream ended), scale, encode as JPEG."""
        try:
            with self._io:
                return self._grab_still(quality=quality, warmup=warmup)
        finally:
            # The frames are garbage once ``_grab_still`` returned; their heap goes back
            # to the OS instead of staying with the agent (``heap_release``).
            release_freed_heap()

    def _grab_still(self, *, quality: int, warmup: int) -> Still:
        import cv2
        import numpy as np

        frame = self._read(warmup=warmup)
        if frame is None:
            # End of a file, or a camera that dropped out: reopen once on the same path.
            if self._capture is not None:
                self._capture.release()
            self._capture = None
            is_index = self.source.isdigit()
            if not is_index and "%" not in self.source and not os.path.exists(self.source):
                raise CameraError(f"{self.source} disappeared", kind="not_found")
            self._capture = self._open_capture(
                is_index=is_index, device=_is_device_node(self.source)
            )
            frame = self._read(warmup=warmup)
        if frame is None:
            if _is_device_node(self.source) and other_holders(self.source):
                raise CameraError(f"{self.source} is streaming to another program", kind="busy")
            raise CameraError(f"no frame from {self.source}", kind="failed")
        native_h, native_w = frame.shape[:2]
        if (native_w, native_h) != (self.width, self.height):
            frame = np.asarray(
                cv2.resize(frame, (self.width, self.height), interpolation=cv2.INTER_AREA),
                dtype=np.uint8,
            )
        ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise CameraError("JPEG encoding failed", kind="failed")
        return Still(
            jpeg=encoded.tobytes(),
            width=self.width,
            height=self.height,
            native_width=int(native_w),
            native_height=int(native_h),
        )
