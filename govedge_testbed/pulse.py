"""A private PulseAudio server with a null sink, and recordings of that sink's monitor.

The voice tests point the agent's player at the sink (``server``/``SINK``) and record
what it played (``record``): real paplay, a real sound server, real samples. The
server runs in the test's own runtime directory with its own socket, so it meets
neither a desktop's sound server nor another test's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from govedge_testbed.services import ServiceUnavailable

__all__ = ["RATE", "SINK", "PulseServer"]

SINK: Final = "govedge_hall"
RATE: Final = 22050  # espeak-ng's rate: recordings compare with its WAVs sample for sample
_HINT: Final = "apt-get install pulseaudio pulseaudio-utils (scripts/bootstrap --for-tests)"


class PulseServer:
    """``pulseaudio`` with one null sink ``SINK`` on a private unix socket."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="govedge-pulse-"))
        self.socket = self.home / "native"
        self._log = self.home / "pulseaudio.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def server(self) -> str:
        """The PULSE_SERVER string of this server."""
        return f"unix:{self.socket}"

    def client_env(self) -> dict[str, str]:
        """An environment whose sound clients (a browser, paplay) play into ``SINK``.

        Its own HOME and runtime directory, so a client finds no other server's cookie
        or socket and no autospawn starts one.
        """
        return self._env()

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            HOME=str(self.home),
            XDG_RUNTIME_DIR=str(self.home),
            PULSE_RUNTIME_PATH=str(self.home / "runtime"),
            PULSE_SERVER=self.server,
        )
        return env

    def start(self) -> None:
        """Start the server; ``ServiceUnavailable`` if it is missing or does not come up."""
        for tool in ("pulseaudio", "paplay", "parec", "pactl"):
            if shutil.which(tool) is None:
                raise ServiceUnavailable(f"{tool} is not installed", hint=_HINT)
        with self._log.open("wb") as log:
            self._proc = subprocess.Popen(
                [
                    "pulseaudio",
                    "-n",  # no default.pa: only the modules below
                    "--daemonize=no",
                    "--exit-idle-time=-1",
                    "--use-pid-file=no",
                    "--log-target=stderr",
                    f"--load=module-native-protocol-unix socket={self.socket} auth-anonymous=1",
                    f"--load=module-null-sink sink_name={SINK} rate={RATE} channels=1",
                ],
                env=self._env(),
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._log.read_text(errors="replace")
                raise ServiceUnavailable(f"pulseaudio exited: {err.strip()[-300:]}", hint=_HINT)
            probe = subprocess.run(
                ["pactl", "list", "short", "sinks"],
                env=self._env(),
                capture_output=True,
                check=False,
            )
            if probe.returncode == 0 and SINK.encode() in probe.stdout:
                return
            time.sleep(0.1)
        self.close()
        raise ServiceUnavailable("pulseaudio did not come up within 20 s", hint=_HINT)

    @contextlib.contextmanager
    def record(self, into: Path) -> Iterator[Path]:
        """Record the sink's monitor (16-bit mono at ``RATE``, raw) into ``into``."""
        with into.open("wb") as out:
            proc = subprocess.Popen(
                [
                    "parec",
                    f"--device={SINK}.monitor",
                    "--format=s16le",
                    f"--rate={RATE}",
                    "--channels=1",
                    "--raw",
                    "--latency-msec=20",
                ],
                env=self._env(),
                stdout=out,
                stderr=subprocess.DEVNULL,
            )
            try:
                self._wait_recording(proc)
                yield into
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=5.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def _wait_recording(self, proc: subprocess.Popen[bytes]) -> None:
        """Until parec's stream is connected: what plays from now on is recorded."""
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServiceUnavailable(f"parec exited with {proc.returncode}", hint=_HINT)
            streams = subprocess.run(
                ["pactl", "list", "short", "source-outputs"],
                env=self._env(),
                capture_output=True,
                check=False,
            )
            if streams.returncode == 0 and streams.stdout.strip():
                return
            time.sleep(0.05)
        raise ServiceUnavailable("parec did not connect within 20 s", hint=_HINT)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self.home, ignore_errors=True)
