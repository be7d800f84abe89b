"""The agent's side of the capture process: stills from a camera held in a child.

OpenCV with NumPy (~30 MiB, two thirds shared libraries) and an open capture's frame
buffers (up to ~60 MiB at 2592x1944) stayed with the agent all day once a camera had
opened. ``CaptureProcess`` runs them in ``worker.py``'s process instead, started on the
first still and stopped by ``release()`` (the driver's idle release) or ``close()``:
while the camera is released, the agent holds none of it. The next still starts the
process again (docs/devices/document-camera.md, "Idle release", gives the cost).

The claim on the source (``capture.claim``) stays with the agent from ``open()`` to
``close()``, released camera or not, so a second driver of this agent still finds the
camera busy. Every method blocks; the driver runs them in worker threads. ``close()``
and ``release()`` end the process without waiting for a still in progress: its reply
then never comes and that still fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from edge_agent.devices.document_camera.capture import CameraError, Still, claim, unclaim

__all__ = ["CaptureProcess", "read_reply", "write_reply"]

# The checkout or site-packages directory holding ``edge_agent``: the child imports the
# same code as the agent, however the agent was started.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])
# After end of input a capture process is gone in ~30-40 ms; one that is not within a
# second is inside a camera that hangs, and is killed: the agent's stop stays within
# 2 s (docs/operations.md, exit codes).
_STOP_GRACE_S = 1.0
_REAP_TIMEOUT_S = 5.0


def write_reply(out: IO[bytes], header: dict[str, Any], payload: bytes = b"") -> None:
    """One reply: a JSON line, then ``payload`` (its length is ``header["size"]``)."""
    out.write(json.dumps(header).encode() + b"\n" + payload)
    out.flush()


def read_reply(stream: IO[bytes]) -> tuple[dict[str, Any], bytes]:
    """One reply from ``stream``; ``EOFError`` if the process ended instead."""
    line = stream.readline()
    if not line:
        raise EOFError("the capture process ended")
    header: dict[str, Any] = json.loads(line)
    size = int(header.get("size", 0))
    payload = stream.read(size) if size else b""
    if len(payload) != size:
        raise EOFError("the capture process ended within a still")
    return header, payload


class CaptureProcess:
    """``open`` / ``grab_still`` / ``release`` / ``close`` of one camera source."""

    def __init__(self, source: str, *, width: int, height: int) -> None:
        self.source = source
        self.width = width
        self.height = height
        self._claim: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        # One request at a time on the pipes; ``_state`` guards ``_process`` alone, so a
        # release never waits for a still in progress.
        self._io = threading.Lock()
        self._state = threading.Lock()
        # Set by ``interrupt`` until the next ``open``: no capture process starts meanwhile.
        self._closing = False

    @property
    def held(self) -> bool:
        """Whether a capture process holds the camera now."""
        with self._state:
            return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The capture process's pid while it runs."""
        with self._state:
            return None if self._process is None else self._process.pid

    def open(self) -> None:
        """Claim the source and open it in a new capture process.

        ``CameraError`` not_found / busy / failed, as ``CameraSource.open``.
        """
        self._claim = claim(self.source, self._claim)
        with self._state:
            self._closing = False
        try:
            with self._io:
                self._start()
        except BaseException:
            self._unclaim()
            raise

    def grab_still(self, *, quality: int, warmup: int = 0) -> Still:
        """One still; starts the capture process again after a ``release()``."""
        if self._claim is None:
            raise CameraError(f"{self.source} is not open", kind="failed")
        with self._io:
            with self._state:
                process = self._process
            if process is None or process.poll() is not None:
                self._stop()  # reap an ended one and close its pipes
                self._start()
                with self._state:
                    process = self._process
            assert process is not None
            assert process.stdin is not None
            request = {"op": "still", "quality": quality, "warmup": warmup}
            try:
                process.stdin.write(json.dumps(request).encode() + b"\n")
                process.stdin.flush()
                header, jpeg = self._reply(process)
            except (OSError, ValueError, EOFError) as exc:  # ended, or closed by a stop
                self._stop()
                raise CameraError(
                    f"{self.source}: the capture process ended", kind="failed"
                ) from exc
        if not header.get("ok"):
            raise CameraError(str(header.get("message")), kind=str(header.get("kind", "failed")))
        return Still(
            jpeg=jpeg,
            width=int(header["width"]),
            height=int(header["height"]),
            native_width=int(header["native_width"]),
            native_height=int(header["native_height"]),
        )

    def release(self) -> None:
        """End the capture process (the camera and OpenCV's memory go); keep the claim."""
        self._stop()

    def abort(self) -> None:
        """Kill the capture process now (a still that overran its deadline); keep the claim."""
        self._stop(kill=True)

    def interrupt(self) -> None:
        """Kill the capture process and start none until the next ``open``.

        For a stop that must not wait for a still in progress (or for a process still
        importing OpenCV on a loaded PC): that still fails at once with ``CameraError``.
        """
        with self._state:
            self._closing = True
        self._stop(kill=True)

    def close(self) -> None:
        """End the capture process and give up the claim; safe twice."""
        self._stop()
        self._unclaim()

    # ---- the process --------------------------------------------------------------

    def _start(self) -> None:
        """Start the process and wait for its open; the caller holds ``_io``."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.devices.document_camera.worker",
             self.source, str(self.width), str(self.height)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )  # fmt: skip
        with self._state:
            closing = self._closing
            if not closing:
                self._process = process
        if closing:  # interrupted while it started: it never holds the camera
            process.kill()
            process.wait(_REAP_TIMEOUT_S)
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()
            raise CameraError(f"{self.source}: the camera is closing", kind="failed")
        try:
            header, _ = self._reply(process)
        except EOFError as exc:
            self._stop()
            raise CameraError(
                f"{self.source}: the capture process did not start", kind="failed"
            ) from exc
        if not header.get("ok"):
            self._stop()
            raise CameraError(str(header.get("message")), kind=str(header.get("kind", "failed")))

    @staticmethod
    def _reply(process: subprocess.Popen[bytes]) -> tuple[dict[str, Any], bytes]:
        assert process.stdout is not None
        try:
            return read_reply(process.stdout)
        except (ValueError, OSError) as exc:  # garbled or closed under us by a stop
            raise EOFError(str(exc)) from exc

    def _stop(self, *, kill: bool = False) -> None:
        with self._state:
            process, self._process = self._process, None
        if process is None:
            return
        if kill:
            process.kill()
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()  # end of input: the process releases and exits
        try:
            process.wait(_STOP_GRACE_S)
        except subprocess.TimeoutExpired:  # inside a capture: nothing left to wait for
            process.kill()
            process.wait(_REAP_TIMEOUT_S)
        if process.stdout is not None:
            process.stdout.close()

    def _unclaim(self) -> None:
        unclaim(self._claim)
        self._claim = None
