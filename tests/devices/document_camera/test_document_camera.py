"""The UVC document-camera driver, fed from video files and image sequences.

No ``/dev/video*`` device exists on this machine (and no v4l2loopback module), so the
tests give the driver a generated MJPG/AVI or a PNG sequence. ``cv2.VideoCapture``
opens those through the SAME call and code path that opens ``/dev/videoN``; only the
backend differs (FFMPEG/images instead of V4L2).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import psutil
import pytest

from edge_agent.devices import (
    DeviceBusy,
    DeviceEvent,
    DeviceIdentity,
    DeviceUnavailable,
    driver_class,
)
from edge_agent.devices.document_camera.capture import other_holders
from edge_agent.devices.document_camera.driver import UvcDocumentCamera
from edge_agent.devices.document_camera.simulator import (
    DocumentCameraSimulator,
    write_document_video,
)


@pytest.fixture
def camera() -> Iterator[DocumentCameraSimulator]:
    with DocumentCameraSimulator(width=640, height=480, frames=4) as sim:
        yield sim


def make_driver(
    source: str, *, events: list[DeviceEvent] | None = None, **settings: Any
) -> UvcDocumentCamera:
    identity = DeviceIdentity(
        device_id="cam-1", profile="uvc-generic", kind="document_camera", address=source
    )
    base = {"width": 320, "height": 240, "jpeg_quality": 80, "warmup_frames": 0}
    return UvcDocumentCamera(
        identity,
        settings={**base, **settings},
        on_event=events.append if events is not None else None,
    )


def decode(jpeg: bytes) -> np.ndarray[Any, Any]:
    image = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG OpenCV can decode"
    return np.asarray(image)


def test_registered_under_its_profile_name() -> None:
    assert driver_class("uvc_document_camera") is UvcDocumentCamera


def test_captures_a_jpeg_at_the_configured_size(camera: DocumentCameraSimulator) -> None:
    events: list[DeviceEvent] = []

    async def main() -> tuple[bytes, dict[str, Any]]:
        async with make_driver(camera.device_path, events=events) as driver:
            jpeg = await driver.capture_jpeg()
            return jpeg, dict(await driver.health())

    jpeg, health = asyncio.run(main())
    assert jpeg[:2] == b"\xff\xd8"
    assert decode(jpeg).shape == (240, 320, 3)
    assert (health["native_width"], health["native_height"]) == (640, 480)
    assert events[0].name == "document.captured"
    assert events[0].data == {"width": 320, "height": 240, "size": len(jpeg)}


def test_native_size_needs_no_scaling(camera: DocumentCameraSimulator) -> None:
    async def main() -> bytes:
        async with make_driver(camera.device_path, width=640, height=480) as driver:
            return await driver.capture_jpeg()

    assert decode(asyncio.run(main())).shape == (480, 640, 3)


def test_more_captures_than_frames_rewind_the_source(camera: DocumentCameraSimulator) -> None:
    async def main() -> list[bytes]:
        async with make_driver(camera.device_path, warmup_frames=1) as driver:
            return [await driver.capture_jpeg() for _ in range(7)]

    shots = asyncio.run(main())
    assert all(decode(s).shape == (240, 320, 3) for s in shots)


def test_image_sequence_source(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"frame_{i:03d}.png"), np.full((300, 400, 3), i * 60, np.uint8))

    async def main() -> bytes:
        async with make_driver(str(tmp_path / "frame_%03d.png"), width=200, height=150) as d:
            return await d.capture_jpeg()

    assert decode(asyncio.run(main())).shape == (150, 200, 3)


def test_jpeg_quality_changes_the_size(camera: DocumentCameraSimulator) -> None:
    async def shot(quality: int) -> bytes:
        async with make_driver(camera.device_path, jpeg_quality=quality) as driver:
            return await driver.capture_jpeg()

    assert len(asyncio.run(shot(95))) > len(asyncio.run(shot(20)))


def test_missing_camera_is_unavailable() -> None:
    async def main() -> None:
        with pytest.raises(DeviceUnavailable, match="does not exist"):
            await make_driver("/dev/video9").open()

    asyncio.run(main())


def test_a_file_that_is_no_video_is_unavailable(tmp_path: Path) -> None:
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video at all" * 100)

    async def main() -> None:
        driver = make_driver(str(junk))
        with pytest.raises(DeviceUnavailable, match="cannot be opened"):
            await driver.open()

    asyncio.run(main())


def test_unplugged_between_captures(camera: DocumentCameraSimulator) -> None:
    async def main() -> dict[str, Any]:
        async with make_driver(camera.device_path) as driver:
            # Drain the open stream, then take the file away: the reopen must fail.
            for _ in range(4):
                await driver.capture()
            camera.unplug()
            with pytest.raises(DeviceUnavailable, match="disappeared"):
                await driver.capture()
            return dict(await driver.health())

    health = asyncio.run(main())
    assert health["captures_failed"] == 1


def test_second_driver_on_the_same_camera_is_busy(camera: DocumentCameraSimulator) -> None:
    async def main() -> None:
        async with make_driver(camera.device_path):
            with pytest.raises(DeviceBusy, match="in use"):
                await make_driver(camera.device_path).open()
        # Released on close: a new driver may open it now.
        async with make_driver(camera.device_path) as again:
            await again.capture()

    asyncio.run(main())


def test_other_process_holding_a_device_is_found(tmp_path: Path) -> None:
    """The busy check for /dev/video nodes, exercised on a file another process holds."""
    held = tmp_path / "held"
    held.write_bytes(b"x")
    with held.open("rb") as stdin:
        proc = subprocess.Popen(["sleep", "30"], stdin=stdin)
    try:
        assert proc.pid in other_holders(str(held))
    finally:
        proc.kill()
        proc.wait(5)
    assert other_holders(str(tmp_path / "nobody")) == []


def capture_processes() -> list[psutil.Process]:
    """This process's camera capture processes (where OpenCV holds the camera)."""
    return [
        child
        for child in psutil.Process().children()
        if "edge_agent.devices.document_camera.worker" in " ".join(child.cmdline())
    ]


def held_paths() -> list[str]:
    """The files this process's capture processes hold open."""
    return [os.path.realpath(f.path) for p in capture_processes() for f in p.open_files()]


async def poll(check: Any) -> None:
    """Until ``check()`` holds, for at most 30 s (the camera tests' own deadline)."""
    for _ in range(600):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not within 30 s")


def test_the_camera_is_held_by_a_capture_process_not_the_agent(
    camera: DocumentCameraSimulator,
) -> None:
    async def main() -> tuple[list[str], dict[str, Any]]:
        async with make_driver(camera.device_path, idle_release=0) as driver:
            await driver.capture()
            held_by = held_paths()
            return held_by, dict(await driver.health())

    held_by, health = asyncio.run(main())
    assert os.path.realpath(camera.device_path) in held_by
    assert health["held"] is True
    assert capture_processes() == []  # closed with the driver


def test_an_idle_camera_is_released_and_the_next_still_opens_it_again(
    camera: DocumentCameraSimulator,
) -> None:
    async def main() -> tuple[bytes, dict[str, Any], dict[str, Any]]:
        async with make_driver(camera.device_path, idle_release=0.2) as driver:
            await driver.capture()

            async def released() -> bool:
                return (await driver.health())["idle_releases"] == 1

            await poll(released)
            assert capture_processes() == []
            idle = dict(await driver.health())
            # Released, but still this driver's: another driver of the agent may not take it.
            with pytest.raises(DeviceBusy, match="in use"):
                await make_driver(camera.device_path).open()
            jpeg = await driver.capture_jpeg()
            return jpeg, idle, dict(await driver.health())

    jpeg, idle, after = asyncio.run(main())
    assert idle["open"] is True
    assert idle["held"] is False
    assert decode(jpeg).shape == (240, 320, 3)
    assert after["held"] is True
    assert after["captures_ok"] == 2
    assert after["captures_failed"] == 0


def test_a_capture_process_that_died_is_started_again(camera: DocumentCameraSimulator) -> None:
    async def main() -> tuple[dict[str, Any], bytes, list[psutil.Process]]:
        async with make_driver(camera.device_path, idle_release=0) as driver:
            await driver.capture()
            (process,) = capture_processes()
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
            jpeg = await driver.capture_jpeg()
            return dict(await driver.health()), jpeg, capture_processes()

    health, jpeg, now = asyncio.run(main())
    assert health["captures_failed"] == 0
    assert decode(jpeg).shape == (240, 320, 3)
    assert len(now) == 1  # a new one


def test_closing_does_not_wait_for_a_camera_that_hangs_while_opening(tmp_path: Path) -> None:
    # A FIFO nobody writes to: the capture process blocks in its open, like a camera that
    # hangs (or a process still importing OpenCV on a loaded PC when the agent stops).
    source = tmp_path / "hanging-camera"
    os.mkfifo(source)

    async def main() -> tuple[BaseException | None, list[psutil.Process]]:
        driver = make_driver(str(source), idle_release=0, open_timeout=120)
        opening = asyncio.create_task(driver.open())

        async def started() -> bool:
            return len(capture_processes()) == 1

        await poll(started)
        # Bounded only to fail instead of hanging: before, the stop waited the whole
        # open_timeout (here 120 s) for the lock the opening held.
        await asyncio.wait_for(driver.close(), 30)
        failure = (await asyncio.gather(opening, return_exceptions=True))[0]
        assert failure is None or isinstance(failure, BaseException)
        return failure, capture_processes()

    failure, left = asyncio.run(main())
    assert isinstance(failure, DeviceUnavailable)
    assert left == []


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="jpeg_quality"):
        make_driver("/dev/video0", jpeg_quality=0)
    with pytest.raises(ValueError, match="unknown"):
        make_driver("/dev/video0", resolution="hd")
    with pytest.raises(ValueError, match="idle_release"):
        make_driver("/dev/video0", idle_release=-1)


def test_write_document_video_round_trip(tmp_path: Path) -> None:
    path = write_document_video(tmp_path / "v.avi", width=160, height=120, frames=2)
    capture = cv2.VideoCapture(str(path))
    ok, frame = capture.read()
    capture.release()
    assert ok
    assert frame.shape == (120, 160, 3)
