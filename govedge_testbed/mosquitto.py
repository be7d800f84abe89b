"""A private Mosquitto broker on a loopback port, with a config file we write."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from govedge_testbed.ports import free_port, wait_for_port
from govedge_testbed.services import ServiceUnavailable

_HINT = "install it with: apt-get install mosquitto (run ./scripts/test, which does this as root)"


def find_mosquitto() -> str:
    """Path of the mosquitto binary, or raise ``ServiceUnavailable``."""
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise ServiceUnavailable("mosquitto is not installed", hint=_HINT)


class Mosquitto:
    """Run ``mosquitto`` on 127.0.0.1; ``restart()`` keeps the port, as a real outage would."""

    def __init__(self, *, port: int | None = None, workdir: Path | None = None) -> None:
        self.binary = find_mosquitto()
        self.port = port or free_port()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="govedge-mosquitto-")
            workdir = Path(self._tmp.name)
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``mqtt://`` URL of this broker."""
        return f"mqtt://127.0.0.1:{self.port}"

    def _write_config(self) -> None:
        self.config_path.write_text(
            "\n".join(
                [
                    "# written by govedge_testbed: development mode, loopback only",
                    "per_listener_settings false",
                    "persistence false",
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    "max_packet_size 1048576",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "",
                ]
            )
        )

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        self._write_config()
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        if not wait_for_port(self.port, timeout=10):
            self.stop()
            raise ServiceUnavailable(
                f"mosquitto did not listen on port {self.port}",
                hint=f"see {self.log_path}",
            )

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 5 s)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def kill(self) -> None:
        """Kill the broker at once (SIGKILL), as a crash would."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=5)
        self._proc = None

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the broker and remove its temporary directory."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
