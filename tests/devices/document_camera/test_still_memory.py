"""Stills do not make the agent's memory grow (issue 17).

At the shipped 2592x1944 a capture allocates and frees tens of MiB (warm-up frames, the
frame, the JPEG) in a worker thread; glibc kept that freed heap, so the agent grew with
the stills it took (measured here: +29 MiB from the first to the third still). Now
``CameraSource.grab_still`` hands it back (``heap_release``) and the agent runs with its
unit's ``MALLOC_ARENA_MAX``. What stays is the open capture's own buffers (the camera is
held open between stills). Checked in a fresh interpreter with the unit's environment,
through the capture code the driver runs, against a video file OpenCV opens like a
camera.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from edge_agent.devices.document_camera.simulator import write_document_video
from edge_agent.service.unit import AGENT_ENVIRONMENT

_CAPTURE = """
import asyncio, json, sys
from edge_agent.devices.document_camera.capture import CameraSource

def anonymous_mib() -> float:
    for line in open("/proc/self/smaps_rollup"):
        if line.startswith("Anonymous:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no Anonymous line")

async def main() -> dict[str, object]:
    source = CameraSource(sys.argv[1], width=2592, height=1944)
    await asyncio.to_thread(source.open)
    sizes, heap = [], []
    for _ in range(3):
        still = await asyncio.to_thread(source.grab_still, quality=90, warmup=3)
        sizes.append([still.width, still.height, still.jpeg[:2].hex()])
        del still
        heap.append(anonymous_mib())
    await asyncio.to_thread(source.close)
    return {"heap": heap, "sizes": sizes}

print(json.dumps(asyncio.run(main())))
"""


def test_the_heap_after_the_third_still_is_the_heap_after_the_first(tmp_path: Path) -> None:
    video = write_document_video(tmp_path / "page.avi", width=2592, height=1944, frames=5)
    done = subprocess.run(
        [sys.executable, "-c", _CAPTURE, str(video)],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, **AGENT_ENVIRONMENT},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["sizes"] == [[2592, 1944, "ffd8"]] * 3  # real full-size JPEGs were made
    first, *later = result["heap"]
    assert max(later) <= first + 4, result  # kept, the third still's heap was +29 MiB
