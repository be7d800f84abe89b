"""Driver of UVC document cameras (高拍仪) through OpenCV/V4L2: JPEG stills on demand.

Mainstream document cameras are driverless UVC devices
(docs/devices/document-camera.md). The driver
holds the camera open between captures (one program may stream from it at a time),
captures at the configured resolution and returns JPEG bytes. OpenCV calls block, so
they run in a worker thread; ``CameraError`` becomes the device error tree here.
"""

from __future__ import annotations

import asyncio
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
from edge_agent.devices.document_camera.capture import CameraError, CameraSource, Still
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
        self._camera = CameraSource(self.source, width=self.config.width, height=self.config.height)
        self._lock = asyncio.Lock()
        self._open = False
        self._last: Still | None = None
        self._counters = dict.fromkeys(("captures_ok", "captures_failed", "timeouts"), 0)

    async def open(self) -> None:
        """Open the camera; ``DeviceUnavailable`` if missing, ``DeviceBusy`` if in use."""
        await self._run(self._camera.open, limit=self.config.open_timeout)
        self._open = True

    async def close(self) -> None:
        """Release the camera; safe twice."""
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
            still: Still = await self._run(
                lambda: self._camera.grab_still(
                    quality=self.config.jpeg_quality, warmup=self.config.warmup_frames
                ),
                limit=self.config.capture_timeout,
                locked=True,
            )
        except DeviceError:
            self._counters["captures_failed"] += 1
            raise
        finally:
            self._lock.release()
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
            raise DeviceTimeout(
                f"camera {self.source} did not answer within {limit}s", device_id=self.device_id
            ) from exc
        except CameraError as exc:
            _log.warning("%s: camera error (%s): %s", self.device_id, exc.kind, exc)
            if exc.kind == "busy":
                raise DeviceBusy(str(exc), device_id=self.device_id) from exc
            raise DeviceUnavailable(str(exc), device_id=self.device_id) from exc
