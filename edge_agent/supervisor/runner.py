"""The supervisor's loop: start ``current``'s agent, judge a trial, restart, forward signals.

It runs the agent as a child process from ``{home}/current/venv/bin/edge-agent run``
with the arguments it was given, and restarts it when it dies (exponential backoff,
reset after a run that lasted ``STABLE_S``); exit code 75 means "restart me from
``current``" and is restarted at once. SIGTERM/SIGINT are forwarded to the child and the
supervisor exits with the child's code. The child shares the supervisor's process group
(systemd's cgroup), so a power cut or a SIGKILL of the service takes both.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from types import FrameType
from typing import Final, Literal

from edge_agent.service.unit import AGENT_ENVIRONMENT
from edge_agent.supervisor.decisions import prepare, roll_back
from edge_agent.updates.layout import (
    HOME_ENV,
    Trial,
    health_path,
    linked_version,
    read_health,
    switch_link,
    venv_agent,
    write_trial,
)

log = logging.getLogger(__name__)

RESTART_NOW: Final = 75
STABLE_S: Final = 60.0
TERM_GRACE_S: Final = 10.0
POLL_S: Final = 0.05

Verdict = Literal["healthy", "crashed", "timeout", "stopping"]


class Supervisor:
    """One supervisor over one install home."""

    def __init__(
        self,
        home: Path,
        agent_args: list[str],
        *,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 60.0,
    ) -> None:
        self.home = home
        self.agent_args = agent_args
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def _start(self, version: str) -> subprocess.Popen[bytes]:
        # The unit's allocator settings also when the supervisor is started by hand; a
        # value the environment sets wins.
        env = {**AGENT_ENVIRONMENT, **os.environ, "GOVEDGE_SUPERVISED": "1",
               HOME_ENV: str(self.home)}  # fmt: skip
        # Under systemd (Type=notify, NotifyAccess=all) the agent reports readiness and
        # pings the watchdog for the service; WATCHDOG_PID names this process, so it is
        # dropped for the child to accept the watchdog as its own (sd_watchdog_enabled).
        env.pop("WATCHDOG_PID", None)
        # Through the ``current`` link, as the contract says; the version was read from it.
        agent = self.home / "current" / "venv" / "bin" / "edge-agent"
        log.info("starting agent %s", version)
        self.child = subprocess.Popen([str(agent), "run", *self.agent_args], env=env)
        if self.stopping:  # a signal that came while it was being started
            self.child.terminate()
        return self.child

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(POLL_S * 4, max(0.0, deadline - time.monotonic())))

    def _stop_child(self, child: subprocess.Popen[bytes]) -> None:
        """TERM, then KILL after ``TERM_GRACE_S``."""
        child.terminate()
        try:
            child.wait(TERM_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def _watch_trial(self, trial: Trial, child: subprocess.Popen[bytes]) -> Verdict:
        deadline = time.monotonic() + trial.health_timeout_s
        while True:
            if child.poll() is not None:
                return "stopping" if self.stopping else "crashed"
            if self.stopping:
                return "stopping"
            health = read_health(self.home)
            if health is not None and health.version == trial.version and health.pid == child.pid:
                return "healthy"
            if time.monotonic() >= deadline:
                return "timeout"
            time.sleep(POLL_S)

    def _run_trial(self, trial: Trial) -> bool:
        """Start the trial's version and judge it; True when a child keeps running."""
        trial = trial.with_(starts=trial.starts + 1)
        write_trial(self.home, trial)  # counted before the start: a power cut still counts
        health_path(self.home).unlink(missing_ok=True)
        log.info(
            "trial of %s (previous %s): start %d, health timeout %.0f s",
            trial.version,
            trial.previous,
            trial.starts,
            trial.health_timeout_s,
        )
        child = self._start(trial.version)
        verdict = self._watch_trial(trial, child)
        if verdict == "healthy":
            write_trial(self.home, trial.with_(outcome="healthy"))
            switch_link(self.home, "good", trial.version)
            log.info("trial of %s healthy; good now %s", trial.version, trial.version)
            return True
        if verdict == "stopping":
            return True
        if verdict == "crashed":
            code = child.returncode
            roll_back(
                self.home, trial, "crashed_on_start", f"exited with code {code} before healthy"
            )
            return False
        log.warning(
            "trial of %s: no health proof in %.0f s; stopping it",
            trial.version,
            trial.health_timeout_s,
        )
        self._stop_child(child)
        roll_back(
            self.home, trial, "not_healthy", f"no health proof within {trial.health_timeout_s:g} s"
        )
        return False

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT; the child's exit code."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        failures = 0
        while not self.stopping:
            trial = prepare(self.home)
            version = linked_version(self.home, "current")
            if version is None or not venv_agent(self.home, version).exists():
                log.error("no runnable version under %s; retrying", self.home)
                self._sleep(min(self.backoff_cap_s, self.backoff_base_s * 2**failures))
                failures += 1
                continue
            started = time.monotonic()
            if trial is not None:
                if not self._run_trial(trial):
                    continue  # rolled back: start the older version at once
                child = self.child
            else:
                child = self._start(version)
            assert child is not None
            code = child.wait()
            if self.stopping:
                break
            if code == RESTART_NOW:
                log.info("agent %s asked for a restart (exit 75)", version)
                failures = 0
                continue
            if time.monotonic() - started >= STABLE_S:
                failures = 0
            delay = min(self.backoff_cap_s, self.backoff_base_s * 2**failures)
            failures += 1
            log.warning("agent %s exited with code %s; restarting in %.1f s", version, code, delay)
            self._sleep(delay)
        return self._exit_code()

    def _exit_code(self) -> int:
        child = self.child
        if child is None:
            return 0
        code = child.wait()
        log.info("agent exited with code %s; supervisor stopping", code)
        return 128 - code if code < 0 else code
