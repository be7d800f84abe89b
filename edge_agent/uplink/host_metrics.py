"""Host health samples for telemetry, from psutil.

``sample_host_metrics`` touches the file system (disk usage), so call it off the event
loop. CPU percent is measured since the previous call (``interval=None``); call
``prime_cpu_percent`` once at start so the first sample is meaningful.
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil

Metrics = dict[str, float | int]


def prime_cpu_percent() -> None:
    """Start the CPU measurement window; the first ``cpu_percent`` call returns 0."""
    psutil.cpu_percent(interval=None)


def sample_host_metrics(data_dir: Path, *, agent_started_monotonic: float) -> Metrics:
    """CPU, memory, disk of ``data_dir``'s file system and uptimes (blocking)."""
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(str(data_dir))
    return {
        "cpu_percent": float(psutil.cpu_percent(interval=None)),
        "mem_used_percent": float(memory.percent),
        "mem_available_bytes": int(memory.available),
        "disk_used_percent": float(disk.percent),
        "disk_free_bytes": int(disk.free),
        "host_uptime_s": round(max(0.0, time.time() - psutil.boot_time()), 3),
        "agent_uptime_s": round(time.monotonic() - agent_started_monotonic, 3),
    }
