"""The agent's host telemetry, read from /proc, against psutil's reading of the same host.

The agent stopped importing psutil (its memory budget); operators' dashboards and
alert rules were built on psutil's figures, so each figure is held to psutil's here,
read back to back on this machine. psutil stays a test and bench dependency.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import psutil
import pytest

from edge_agent.uplink import host_metrics
from edge_agent.uplink.host_metrics import prime_cpu_percent, sample_host_metrics
from tests.uplink.test_presence import EXPECTED_METRICS

pytestmark = pytest.mark.timeout(60)


def test_memory_and_disk_are_psutils_figures(tmp_path: Path) -> None:
    # Memory moves while the test runs: a few MiB between the two readings at most.
    theirs = psutil.virtual_memory()
    used, available = host_metrics.memory()
    assert abs(available - theirs.available) < 64 * 2**20
    assert abs(used - theirs.percent) < 1.0

    disk_theirs = psutil.disk_usage(str(tmp_path))
    disk_used, disk_free = host_metrics.disk(tmp_path)
    assert abs(disk_free - disk_theirs.free) < 64 * 2**20
    assert abs(disk_used - disk_theirs.percent) < 0.5


def test_boot_time_is_psutils() -> None:
    assert host_metrics.boot_time() == psutil.boot_time()


def test_cpu_percent_follows_the_work_done_between_samples(tmp_path: Path) -> None:
    prime_cpu_percent()
    time.sleep(0.3)
    idle = sample_host_metrics(tmp_path, agent_started_monotonic=time.monotonic())
    stop = time.monotonic() + 1.0

    def spin() -> None:
        while time.monotonic() < stop:
            pass

    spinners = [threading.Thread(target=spin) for _ in range(os.cpu_count() or 1)]
    for spinner in spinners:
        spinner.start()
    for spinner in spinners:
        spinner.join()
    busy = sample_host_metrics(tmp_path, agent_started_monotonic=time.monotonic() - 5)
    assert 0.0 <= float(idle["cpu_percent"]) <= 100.0
    # A Python spinner per core holds one core at most (the GIL): the window was at
    # least half a core busy on top of whatever the machine did.
    assert float(busy["cpu_percent"]) >= 100.0 / (2 * (os.cpu_count() or 1))
    assert 4.9 <= float(busy["agent_uptime_s"]) < 60
    assert float(busy["host_uptime_s"]) > 0
    assert set(busy) == EXPECTED_METRICS


def test_the_first_reading_of_a_window_is_zero() -> None:
    window = host_metrics._CpuWindow()
    assert window.percent() == 0.0
