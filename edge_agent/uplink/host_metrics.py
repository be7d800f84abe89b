"""Host health samples for telemetry, read from Linux's /proc and ``statvfs``.

The agent runs on Linux outlet PCs only (systemd units, udev, pcscd). It used psutil
for these four readings; psutil's import (its platform modules and their named tuples)
cost ~0.7 MiB of the agent's 64 MiB budget, for what is a few lines of /proc here. The
figures are computed as psutil computes them, so telemetry and the fleet's dashboards
keep their meaning (tests/uplink/test_host_metrics.py holds them to psutil's).

``sample_host_metrics`` touches the file system (disk usage), so call it off the event
loop. CPU percent is measured since the previous call; call ``prime_cpu_percent`` once
at start so the first sample is meaningful.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Final

Metrics = dict[str, float | int]

PROC_STAT: Final = Path("/proc/stat")
PROC_MEMINFO: Final = Path("/proc/meminfo")


def _cpu_times(stat: str) -> tuple[float, float]:
    """(busy, total) jiffies of the ``cpu`` line of /proc/stat.

    As psutil: guest time is already inside user and nice, so it is not added twice;
    idle and iowait are not busy.
    """
    fields = [int(value) for value in stat.split("\n", 1)[0].split()[1:]]
    fields += [0] * (8 - len(fields))  # old kernels print fewer columns
    # user nice system idle iowait irq softirq steal; then guest and guest_nice, which
    # are left out because user and nice already hold them.
    total = sum(fields[:8])
    idle, iowait = fields[3], fields[4]
    return float(total - idle - iowait), float(total)


class _CpuWindow:
    """System-wide CPU busy percent between two calls (psutil's ``interval=None``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[float, float] | None = None

    def percent(self) -> float:
        now = _cpu_times(PROC_STAT.read_text())
        with self._lock:
            last, self._last = self._last, now
        if last is None:
            return 0.0
        busy, total = now[0] - last[0], now[1] - last[1]
        if total <= 0:
            return 0.0
        return round(min(100.0, max(0.0, 100.0 * busy / total)), 1)


_CPU = _CpuWindow()


def prime_cpu_percent() -> None:
    """Start the CPU measurement window; the first ``cpu_percent`` reading returns 0."""
    _CPU.percent()


def memory() -> tuple[float, int]:
    """(used percent, available bytes): used is total minus MemAvailable, as psutil."""
    values: dict[str, int] = {}
    for line in PROC_MEMINFO.read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("MemTotal", "MemAvailable"):
            values[name] = int(rest.split()[0]) * 1024
    total, available = values["MemTotal"], values["MemAvailable"]
    return _percent(total - available, total), available


def disk(path: Path) -> tuple[float, int]:
    """(used percent, free bytes) of ``path``'s file system, as ``df`` and psutil give
    them: the space reserved for root counts as used, "free" is what the agent's user
    may still write."""
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    used = total - st.f_bfree * st.f_frsize
    free_to_user = st.f_bavail * st.f_frsize
    return _percent(used, used + free_to_user), free_to_user


def boot_time() -> float:
    """The host's boot time (Unix seconds), the ``btime`` line of /proc/stat."""
    for line in PROC_STAT.read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("/proc/stat has no btime line")


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole > 0 else 0.0


def sample_host_metrics(data_dir: Path, *, agent_started_monotonic: float) -> Metrics:
    """CPU, memory, disk of ``data_dir``'s file system and uptimes (blocking)."""
    mem_used, mem_available = memory()
    disk_used, disk_free = disk(data_dir)
    return {
        "cpu_percent": _CPU.percent(),
        "mem_used_percent": mem_used,
        "mem_available_bytes": mem_available,
        "disk_used_percent": disk_used,
        "disk_free_bytes": disk_free,
        "host_uptime_s": round(max(0.0, time.time() - boot_time()), 3),
        "agent_uptime_s": round(time.monotonic() - agent_started_monotonic, 3),
    }
