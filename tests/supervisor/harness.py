"""The supervisor as a real process over a real install home, and what a technician checks."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edge_agent.updates.layout import (
    Trial,
    linked_version,
    read_trial,
    switch_link,
    utc_now_iso,
    write_trial,
)
from govedge_testbed import Mosquitto
from tests.agent.harness import poll

CHECKOUT = Path(__file__).resolve().parent.parent.parent
SUPERVISOR = CHECKOUT / ".venv" / "bin" / "edge-agent"


def begin_trial(home: Path, version: str, *, timeout_s: float, starts: int = 0) -> None:
    """What the installer leaves behind: a pending trial, then ``current`` switched."""
    previous = linked_version(home, "current")
    trial = Trial(
        version=version,
        previous=previous,
        campaign_id=7,
        health_timeout_s=timeout_s,
        created_at=utc_now_iso(),
        starts=starts,
    )
    write_trial(home, trial)
    switch_link(home, "current", version)


def trial_of(home: Path) -> Trial:
    trial = read_trial(home)
    assert trial is not None
    return trial


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def environ_of(pid: int) -> list[str]:
    """The ``NAME=value`` entries a process was started with."""
    return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")


@dataclass
class SupervisorProcess:
    """``edge-agent supervise`` in a session of its own (as systemd's cgroup would hold it)."""

    home: Path
    broker: Mosquitto
    outlet_id: str
    data_dir: Path
    log_path: Path

    def __post_init__(self) -> None:
        self._log = self.log_path.open("ab")
        args = ["--mqtt-url", self.broker.url, "--outlet-id", self.outlet_id]
        args += ["--data-dir", str(self.data_dir), "--reconnect-cap", "1"]
        self.proc = subprocess.Popen(
            [str(SUPERVISOR), "supervise", "--home", str(self.home), "--", *args],
            cwd=self.home,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def agent_pids(self) -> list[int]:
        return [p for p in children(self.proc.pid) if alive(p)]

    def power_cut(self) -> None:
        """SIGKILL the supervisor and its agent at once, like a power cut."""
        pids = [self.proc.pid, *children(self.proc.pid)]
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        poll(lambda: not any(alive(p) for p in pids), timeout=10, what="every process gone")
        self._log.close()

    def stop(self) -> int:
        """SIGTERM, as systemd stops the service; the exit code."""
        agents = self.agent_pids()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(20)
        poll(lambda: not any(alive(p) for p in agents), timeout=10, what="the agent gone")
        self._log.close()
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if not self._log.closed:
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
