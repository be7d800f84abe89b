"""A private VictoriaMetrics (Debian's ``victoria-metrics``) on a loopback port.

It speaks the InfluxDB v2 write API (``/api/v2/write``) that ``influxdb-client`` uses,
and reads back through ``/api/v1/export``; Debian's InfluxDB 1.6 has no v2 write API.
``-search.latencyOffset=0`` makes fresh points visible to queries at once.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from govedge_testbed.ports import free_port, wait_for_port
from govedge_testbed.services import ServiceUnavailable

_HINT = "install it with: apt-get install victoria-metrics (./scripts/test does this as root)"


def find_victoria_metrics() -> str:
    """Path of the binary, or raise ``ServiceUnavailable``."""
    for candidate in (shutil.which("victoria-metrics"), "/usr/bin/victoria-metrics"):
        if candidate and Path(candidate).exists():
            return candidate
    raise ServiceUnavailable("victoria-metrics is not installed", hint=_HINT)


class VictoriaMetrics:
    """``start()``/``stop()`` keep the port and the data, as a real outage would."""

    def __init__(self, *, port: int | None = None) -> None:
        self.binary = find_victoria_metrics()
        self.port = port or free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="govedge-vm-")
        self.data_dir = Path(self._tmp.name) / "data"
        self.log_path = Path(self._tmp.name) / "vm.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL (the InfluxDB v2 client's ``url``)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start and wait until it listens."""
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    self.binary,
                    f"-httpListenAddr=127.0.0.1:{self.port}",
                    f"-storageDataPath={self.data_dir}",
                    "-retentionPeriod=1y",
                    "-search.latencyOffset=0s",
                    "-loggerLevel=ERROR",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if not wait_for_port(self.port, timeout=20):
            self.stop()
            raise ServiceUnavailable(
                f"victoria-metrics did not listen on {self.port}", hint=f"see {self.log_path}"
            )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def close(self) -> None:
        """Stop and remove the data directory."""
        self.stop()
        self._tmp.cleanup()

    def export(self, match: str) -> list[dict[str, Any]]:
        """``/api/v1/export?match[]=...``: one JSON object per series."""
        query = urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=10) as reply:  # noqa: S310
            body = reply.read().decode()
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def __enter__(self) -> VictoriaMetrics:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
