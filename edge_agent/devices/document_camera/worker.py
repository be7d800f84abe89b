"""The document camera's capture process: OpenCV runs here, never in the agent.

``python -m edge_agent.devices.document_camera.worker SOURCE WIDTH HEIGHT`` opens the
camera with ``CameraSource`` (``capture.py``) and answers requests on its standard
input, one JSON line each, on its standard output:

- ``{"op": "still", "quality": Q, "warmup": N}`` → ``{"ok": true, "width": …, "height": …,
  "native_width": …, "native_height": …, "size": S}`` and then S bytes of JPEG;
- any failure → ``{"ok": false, "kind": "not_found"|"busy"|"failed", "message": …}``.

The first line it writes answers the open (``{"ok": true}`` or the failure); it exits on
end of input, so an agent that dies or releases the camera takes it with it.
OpenCV with NumPy and the capture's frame buffers (~40-60 MiB at 2592x1944) live only
as long as this process (``capture_process.py``; docs/devices/document-camera.md).
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import IO, Any

from edge_agent.devices.document_camera.capture import CameraError, CameraSource
from edge_agent.devices.document_camera.capture_process import write_reply

__all__ = ["main", "serve"]


def _failure(exc: CameraError) -> dict[str, Any]:
    return {"ok": False, "kind": exc.kind, "message": str(exc)}


def serve(source: str, width: int, height: int, requests: IO[bytes], out: IO[bytes]) -> None:
    """Open ``source`` and answer ``requests`` until they end."""
    camera = CameraSource(source, width=width, height=height)
    try:
        camera.open()
    except CameraError as exc:
        write_reply(out, _failure(exc))
        return
    write_reply(out, {"ok": True})
    try:
        for line in requests:
            request = json.loads(line)
            if request.get("op") != "still":
                write_reply(out, {"ok": False, "kind": "failed", "message": "unknown request"})
                continue
            try:
                still = camera.grab_still(
                    quality=int(request["quality"]), warmup=int(request["warmup"])
                )
            except CameraError as exc:
                write_reply(out, _failure(exc))
                continue
            header = {
                "ok": True,
                "width": still.width,
                "height": still.height,
                "native_width": still.native_width,
                "native_height": still.native_height,
                "size": len(still.jpeg),
            }
            write_reply(out, header, still.jpeg)
    finally:
        camera.close()


def main(argv: list[str]) -> int:
    """The process's entry point: ``SOURCE WIDTH HEIGHT``."""
    source, width, height = argv[0], int(argv[1]), int(argv[2])
    # BrokenPipeError: the agent went away, nothing to answer.
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
        serve(source, width, height, sys.stdin.buffer, sys.stdout.buffer)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
