"""Shared helpers for the benchmarks: real processes, machine facts, percentiles, and the
section writer for docs/performance.md. Not a library: each bench script imports it."""

from __future__ import annotations

import os
import platform
import re
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import psutil
from _procs import tree_cpu_seconds

from govedge_testbed import Mosquitto, free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PERF_DOC = ROOT / "docs" / "performance.md"


def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE to the hard limit (children, e.g. mosquitto, inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def machine() -> str:
    """One line describing this machine, for the doc."""
    try:
        mosq = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, check=False)
        mosq_v = (mosq.stdout or mosq.stderr).splitlines()[0].replace("mosquitto version ", "")
    except (OSError, IndexError):
        mosq_v = "?"
    mem = psutil.virtual_memory().total / 2**30
    return (
        f"{os.cpu_count()} cores, {mem:.0f} GiB, {platform.platform(terse=True)}, "
        f"Python {platform.python_version()}, Mosquitto {mosq_v}"
    )


def pct(values: list[float], q: float) -> float:
    """Percentile ``q`` (0..100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def poll(check: Callable[[], Any], *, timeout: float, interval: float = 0.1, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"{what or 'condition'} not met within {timeout} s; last: {last!r}")


def _spawn(
    argv: list[str], log: IO[bytes], env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GOVEDGE_")}
    return subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, env={**clean, **(env or {})}
    )


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str, timeout: float = 5) -> Any:
        return httpx.get(f"{self.url}{path}", timeout=timeout).json()

    def stats(self) -> dict[str, Any]:
        return self.get("/api/v1/ingest/stats")

    def state(self, outlet_id: str) -> str | None:
        r = httpx.get(f"{self.url}/api/v1/outlets/{outlet_id}", timeout=5)
        return r.json()["state"] if r.status_code == 200 else None


def start_server(
    mqtt_url: str,
    workdir: Path,
    *,
    env: dict[str, str] | None = None,
    database_url: str | None = None,
) -> Server:
    """``fleet-server run`` with ``GOVEDGE_API_AUTH=off`` (benchmarks only), on SQLite in
    ``workdir`` unless given a ``database_url``. A port taken between ``free_port()`` and
    the server's bind (seconds, under load, on a shared machine) is tried again."""
    for attempt in range(3):
        try:
            return _start_server(mqtt_url, workdir, env=env, database_url=database_url)
        except PortTaken:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class PortTaken(RuntimeError):
    """The server's port was taken before it could bind it."""


def _start_server(
    mqtt_url: str, workdir: Path, *, env: dict[str, str] | None, database_url: str | None
) -> Server:
    port = free_port()
    log = workdir / "server.log"
    with log.open("ab") as out:
        proc = _spawn(
            [str(BIN / "fleet-server"), "run", "--mqtt-url", mqtt_url,
             "--database-url", database_url or f"sqlite:///{workdir / 'fleet.db'}",
             "--listen", f"127.0.0.1:{port}"],
            out,
            env={"GOVEDGE_API_AUTH": "off", **(env or {})},
        )  # fmt: skip
    server = Server(url=f"http://127.0.0.1:{port}", proc=proc, log=log)

    def ready() -> bool:
        if proc.poll() is not None:
            said = log.read_text()[-3000:]
            error = PortTaken if f"{port}): address already in use" in said else RuntimeError
            raise error(f"fleet-server exited {proc.returncode}:\n{said}")
        try:
            return httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    poll(ready, timeout=90, interval=0.2, what="fleet-server /readyz")
    return server


def start_agent(
    mqtt_url: str,
    outlet_id: str,
    data_dir: Path,
    *,
    keepalive: int = 30,
    telemetry_interval: float = 30,
    local_api_port: int = 0,
    extra: list[str] | None = None,
    log: Path | None = None,
) -> subprocess.Popen[bytes]:
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    log = log or data_dir.parent / f"agent-{outlet_id}.log"
    with log.open("ab") as out:
        return _spawn(
            [str(BIN / "edge-agent"), "run", "--mqtt-url", mqtt_url, "--outlet-id", outlet_id,
             "--data-dir", str(data_dir), "--keepalive", str(keepalive),
             "--telemetry-interval", str(telemetry_interval),
             "--local-api-port", str(local_api_port), *(extra or [])],
            out,
        )  # fmt: skip


class TunedMosquitto(Mosquitto):
    """The testbed's broker with extra config lines (written by the benchmark, not the testbed)."""

    def __init__(self, extra: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._extra = extra

    def _write_config(self) -> None:
        super()._write_config()
        with self.config_path.open("a") as f:
            f.write("# added by bench/\n" + "\n".join(self._extra) + "\n")


class ProcSampler:
    """CPU (% of one core, with its descendants') and RSS of one process, between marks."""

    def __init__(self, pid: int) -> None:
        self.p = psutil.Process(pid)
        self._t = time.monotonic()
        self._cpu = self._cpu_total()

    def _cpu_total(self) -> float:
        return tree_cpu_seconds(self.p)

    def mark(self) -> tuple[float, float]:
        """Return (cpu % of one core since the last mark, RSS MiB now)."""
        now, cpu = time.monotonic(), self._cpu_total()
        share = 100 * (cpu - self._cpu) / max(1e-9, now - self._t)
        self._t, self._cpu = now, cpu
        return share, self.p.memory_info().rss / 2**20


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table (also readable on a terminal)."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def update_doc(section: str, body: str, *, doc: Path = PERF_DOC) -> None:
    """Replace (or append) the block between the markers of ``section`` in docs/performance.md
    (or ``doc``: the suite's tests record into a copy)."""
    begin, end = f"<!-- bench:{section}:begin -->", f"<!-- bench:{section}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = doc.read_text() if doc.exists() else "# Performance\n"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _m: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    doc.write_text(text)
    print(f"updated section {section!r} of {doc}")
