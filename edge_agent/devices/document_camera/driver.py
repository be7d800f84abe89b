"""Driver of UVC document cameras (高拍仪) through OpenCV/V4L2: JPEG stills on demand.

Mainstream document cameras are driverless UVC devices
(docs/devices/document-camera.md). The driver captures at the configured resolution
and returns JPEG bytes. OpenCV runs in a capture process (``capture_process.py``) that
holds the camera between stills (one program may stream from it at a time) until
``idle_release`` seconds pass without one: then the process ends, giving the camera and
OpenCV's memory back, and the next still starts it again. Its calls block, so they run
in a worker thread; ``CameraError`` becomes the device error tree here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from edge_agent.devices.base import (
    DeviceBusy,
    DeviceError,
    DeviceIdentity,
    DeviceTimeout,
    DeviceUnavailable,
    Driver,
    EventSink,
    Health,
    ProbeResult,
)
from edge_agent.devices.document_camera.capture import CameraError, Still
from edge_agent.devices.document_camera.capture_process import CaptureProcess
from edge_agent.devices.document_camera.settings import DocumentCameraSettings
from edge_agent.devices.registry import register_driver
from edge_agent.devices.settings import DriverSettings

__all__ = ["UvcDocumentCamera"]

_log = logging.getLogger(__name__)


@register_driver("uvc_document_camera")
class UvcDocumentCamera(Driver):
    """One UVC document camera at ``settings.device`` or ``identity.address``."""

    kind: ClassVar[str] = "document_camera"
    settings_model: ClassVar[type[DriverSettings]] = DocumentCameraSettings
    config: DocumentCameraSettings

    def __init__(
        self,
        identity: DeviceIdentity,
        *,
        settings: Mapping[str, Any] | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        super().__init__(identity, settings=settings, on_event=on_event)
        self.source = self.config.device or identity.address
        self._camera = CaptureProcess(
            self.source, width=self.config.width, height=self.config.height
        )
        self._lock = asyncio.Lock()
        self._open = False
        self._last: Still | None = None
        self._counters = dict.fromkeys(
            ("captures_ok", "captures_failed", "timeouts", "idle_releases"), 0
        )
        self._idle_timer: asyncio.TimerHandle | None = None
        self._idle_task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Open the camera; ``DeviceUnavailable`` if missing, ``DeviceBusy`` if in use."""
        await self._run(self._camera.open, limit=self.config.open_timeout)
        self._open = True
        self._arm_idle_release()

    async def close(self) -> None:
        """Release the camera; safe twice."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._idle_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._idle_task  # short: it ends the capture process
            self._idle_task = None
        if self._lock.locked():
            # A still (or a probe on a loaded PC, importing OpenCV) is running: end it
            # now, or the agent's stop would wait for it past its service manager's patience.
            await asyncio.to_thread(self._camera.interrupt)
        async with self._lock:
            await asyncio.to_thread(self._camera.close)
        self._open = False

    async def probe(self) -> ProbeResult:
        """A camera is one that yields a frame."""
        still = await self.capture()
        return ProbeResult(
            model="UVC",
            details={"native_width": still.native_width, "native_height": still.native_height},
        )

    async def health(self) -> Health:
        """Counters and the last native frame size."""
        health: Health = dict(self._counters)
        health["open"] = self._open
        # False between an idle release and the next still (docs/devices/document-camera.md).
        health["held"] = self._camera.held
        if self._last is not None:
            health["native_width"] = self._last.native_width
            health["native_height"] = self._last.native_height
        return health

    async def capture(self) -> Still:
        """One still at the configured size, JPEG-encoded; emits ``document.captured``."""
        try:
            async with asyncio.timeout(self.config.busy_timeout):
                await self._lock.acquire()
        except TimeoutError as exc:
            raise DeviceBusy(
                "another capture is using the camera", device_id=self.device_id
            ) from exc
        try:
            if not self._open:
                raise DeviceUnavailable("camera is not open", device_id=self.device_id)
            # After an idle release the still opens the camera again first.
            limit = self.config.capture_timeout
            if not self._camera.held:
                limit += self.config.open_timeout
            still: Still = await self._run(
                lambda: self._camera.grab_still(
                    quality=self.config.jpeg_quality, warmup=self.config.warmup_frames
                ),
                limit=limit,
                locked=True,
            )
        except DeviceError:
            self._counters["captures_failed"] += 1
            raise
        finally:
            self._lock.release()
            if self._open:
                self._arm_idle_release()
        self._counters["captures_ok"] += 1
        # Health needs the sizes only: the JPEG (a citizen's document, up to a few MiB)
        # is not kept past the caller's use.
        self._last = dataclasses.replace(still, jpeg=b"")
        self.emit("document.captured", width=still.width, height=still.height, size=len(still.jpeg))
        return still

    async def self_test(self) -> Health:
        """One frame, its size only: the picture itself is dropped (it may show a person)."""
        still = await self.capture()
        return {"frame": True, "width": still.width, "height": still.height}

    async def capture_jpeg(self) -> bytes:
        """JPEG bytes of one still (what the local API hands the clerk app)."""
        return (await self.capture()).jpeg

    async def _run(self, func: Any, *, limit: float, locked: bool = False) -> Any:
        try:
            async with asyncio.timeout(limit):
                if locked:
                    return await asyncio.to_thread(func)
                async with self._lock:
                    return await asyncio.to_thread(func)
        except TimeoutError as exc:
            self._counters["timeouts"] += 1
            # The capture process may hang inside the camera: end it, so the next still
            # starts a fresh one instead of queueing behind it.
            await asyncio.to_thread(self._camera.abort)
            raise DeviceTimeout(
                f"camera {self.source} did not answer within {limit}s", device_id=self.device_id
            ) from exc
        except CameraError as exc:
            _log.warning("%s: camera error (%s): %s", self.device_id, exc.kind, exc)
            if exc.kind == "busy":
                raise DeviceBusy(str(exc), device_id=self.device_id) from exc
            raise DeviceUnavailable(str(exc), device_id=self.device_id) from exc

    # ---- idle release ---------------------------------------------------------------

    def _arm_idle_release(self) -> None:
        """(Re)start the idle clock: ``idle_release`` s from now the camera is released."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self.config.idle_release > 0:
            loop = asyncio.get_running_loop()
            self._idle_timer = loop.call_later(self.config.idle_release, self._idle_elapsed)

    def _idle_elapsed(self) -> None:
        self._idle_timer = None
        if self._idle_task is None or self._idle_task.done():
            self._idle_task = asyncio.get_running_loop().create_task(
                self._release_idle(), name=f"camera-idle-release-{self.device_id}"
            )

    async def _release_idle(self) -> None:
        if self._lock.locked():  # a still is running; it restarts the clock when done
            return
        async with self._lock:
            if not self._open or self._idle_timer is not None or not self._camera.held:
                return  # closed, or a still came in meanwhile
            await asyncio.to_thread(self._camera.release)
        self._counters["idle_releases"] += 1
        _log.info(
            "%s: camera released after %.0f s without a still",
            self.device_id,
            self.config.idle_release,
        )
