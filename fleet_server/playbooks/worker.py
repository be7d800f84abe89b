"""Runs: ansible-runner in a child process per run (``runner_process``), watched by a
thread of the server that stores its job events as they come.

Each run gets a private data dir ``<GOVEDGE_PLAYBOOK_RUNS_DIR>/<id>`` (inventory, env,
artifacts; kept after the run). The SSH key goes to ansible-runner's ``ssh_key`` and is
never stored or logged. Cancel sets a flag that ansible-runner's cancel callback reads.
Runs survive nothing: a server stopping interrupts its runs, and at start the server
marks runs left pending or running (a crash) interrupted.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.playbooks import run_files
from fleet_server.playbooks.fleet_vars import Supply
from fleet_server.playbooks.runner_process import run_in_child
from fleet_server.playbooks.tables import PlaybookEvent, PlaybookHost, PlaybookRun
from fleet_server.redact import redact_text
from govedge_wire.pii import mask_text

log = logging.getLogger(__name__)

_STDOUT_MAX = 4000
# The error of a run the server's stop (or death) cut short.
INTERRUPTED = "the fleet server stopped while this run was in progress; the hosts' state is unknown"
# ansible-runner event → the host status it reports
_HOST_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}


def mask(text: str) -> str:
    """``text`` without ID numbers, mobile numbers or URL secrets."""
    return redact_text(mask_text(text))[:_STDOUT_MAX]


_SECRET_NAME = re.compile(r"^GOVEDGE_|TOKEN|PASSW|SECRET|KEY|CREDENTIAL|DATABASE_URL", re.I)


def child_env(bin_dir: str) -> dict[str, str]:
    """Variables for ansible-playbook. ansible-runner starts from the server's whole
    environment and writes it into the run's ``artifacts/command``: every variable whose
    name looks like a secret (and every ``GOVEDGE_`` one) is blanked here."""
    blanked = {name: "" for name in os.environ if _SECRET_NAME.search(name)}
    # ansible-playbook of this environment, even when PATH lacks the venv
    # ansible-runner turns host key checking off unless told: the run's known_hosts
    # (pinned keys, run_files.py) is only checked with it on.
    # Pipelining sends each module to the PC's Python over the one SSH command that runs
    # it, instead of a temporary file made, copied, run and removed in three or four: a
    # step of a run over a slow outlet link takes a round trip instead of several. It
    # needs sudo without ``requiretty`` (Debian's default) where ``become`` uses sudo.
    return {**blanked, "PATH": f"{bin_dir}:/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_PIPELINING": "True"}  # fmt: skip


def _now() -> datetime:
    return datetime.now(UTC)


class RunManager:
    """Starts runs (a watching thread and a child process each) and cancels them; one
    per server."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        runs_dir: Path,
        ssh_key: Path | None,
        max_concurrent: int = 4,
        revoke: Callable[[str, str], None] | None = None,
    ) -> None:
        self._sessions = sessions
        # A run's thread waits its turn, its run still pending, while ``max_concurrent``
        # others run (300 outlets are one run with forks, not 300 runs at once); waiting
        # runs start in the order they were started, first come first served.
        self._max_concurrent = max_concurrent
        self._running = 0
        self._waiting: deque[int] = deque()
        self._turn = threading.Condition()
        self._runs_dir = runs_dir
        self._ssh_key = ssh_key
        # Revokes an outlet's certificates (outlet id, actor): what a decommission run
        # asks for, with ``set_stats: {govedge_revoke: [host]}``, once it succeeded.
        self._revoke = revoke
        self._revoke_asked: dict[int, set[str]] = {}
        self._cancel: dict[int, threading.Event] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()
        # Set by stop(): runs the shutdown cancels end interrupted, not canceled.
        self._stopping = threading.Event()

    def mark_interrupted(self) -> int:
        """Runs left pending or running by an earlier server process: interrupted, with
        the reason, and their hosts without a final result too."""
        with self._sessions() as session, session.begin():
            left = list(
                session.scalars(
                    select(PlaybookRun.id).where(PlaybookRun.status.in_(("pending", "running")))
                )
            )
            if left:
                session.execute(
                    update(PlaybookRun)
                    .where(PlaybookRun.id.in_(left))
                    .values(status="interrupted", finished_at=_now(), error=INTERRUPTED)
                )
                _interrupt_hosts(session, left)
        count = len(left)
        if count:
            log.warning("%d playbook run(s) interrupted by a server restart", count)
        return count

    def start(
        self,
        run_id: int,
        playbook: Path,
        hosts: Mapping[str, dict[str, Any]],
        supply: Supply | None = None,
        *,
        extra_vars: Mapping[str, Any] | None = None,
    ) -> None:
        """Run ``playbook`` on ``hosts`` in a new thread, with ``extra_vars`` (the run row
        holds them masked; without them, the row's are used)."""
        cancel = threading.Event()
        given = None if extra_vars is None else dict(extra_vars)
        thread = threading.Thread(
            target=self._run,
            args=(run_id, playbook, dict(hosts), cancel, supply or Supply(), given),
            name=f"playbook-run-{run_id}", daemon=True,
        )  # fmt: skip
        with self._lock:
            self._cancel[run_id] = cancel
            self._threads[run_id] = thread
        thread.start()

    def cancel(self, run_id: int) -> bool:
        """Ask a running run to stop; False when this process is not running it."""
        with self._lock:
            flag = self._cancel.get(run_id)
        if flag is None:
            return False
        flag.set()
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel every run and wait for the threads (server shutdown): interrupted."""
        self._stopping.set()
        with self._lock:
            flags, threads = list(self._cancel.values()), list(self._threads.values())
        for flag in flags:
            flag.set()
        for thread in threads:
            thread.join(timeout)

    def _run(
        self,
        run_id: int,
        playbook: Path,
        hosts: dict[str, dict[str, Any]],
        cancel: threading.Event,
        supply: Supply,
        given: dict[str, Any] | None,
    ) -> None:
        if not self._wait_turn(run_id, cancel):
            # canceled (or the server stops) while waiting its turn
            self._finish(run_id, "interrupted" if self._stopping.is_set() else "canceled",
                         None, None)  # fmt: skip
            with self._lock:
                self._cancel.pop(run_id, None)
                self._threads.pop(run_id, None)
            return
        try:
            self._run_now(run_id, playbook, hosts, cancel, supply, given)
        finally:
            with self._turn:
                self._running -= 1
                self._turn.notify_all()

    def _wait_turn(self, run_id: int, cancel: threading.Event) -> bool:
        """Wait until ``run_id`` is first in line and a slot is free; False if canceled."""
        with self._turn:
            self._waiting.append(run_id)
            while self._waiting[0] != run_id or self._running >= self._max_concurrent:
                if cancel.is_set():
                    self._waiting.remove(run_id)
                    self._turn.notify_all()
                    return False
                self._turn.wait(timeout=0.5)
            self._waiting.popleft()
            self._running += 1
            self._turn.notify_all()
            return True

    def _run_now(
        self,
        run_id: int,
        playbook: Path,
        hosts: dict[str, dict[str, Any]],
        cancel: threading.Event,
        supply: Supply,
        given: dict[str, Any] | None,
    ) -> None:
        with self._sessions() as session, session.begin():
            run = session.get(PlaybookRun, run_id)
            assert run is not None
            run.status, run.started_at = "running", _now()
            check, forks = run.check_mode, run.forks
            extra_vars = dict(run.extra_vars) if given is None else given
        data_dir = self._runs_dir / str(run_id)
        self._runs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (data_dir / "inventory").mkdir(mode=0o700, parents=True, exist_ok=True)
        bin_dir = str(Path(sys.executable).parent)
        status, rc, error = "error", None, None
        prepared = None
        # ssh connections are shared within a run only: a later run (another pin, a
        # reinstalled PC) never rides on one opened before it. A short path: a socket
        # path must fit in 108 bytes.
        control_dir = tempfile.mkdtemp(prefix="govedge-ssh-")
        try:
            prepared = run_files.prepare(
                data_dir, run_id, supply, hosts, self._sessions, mint_token=_mint_token
            )
            extra_vars.update(prepared.extra_vars)
            inventory = {"all": {"hosts": prepared.hosts}}
            (data_dir / "inventory" / "hosts.json").write_text(
                json.dumps(inventory), encoding="utf-8"
            )
            kwargs: dict[str, Any] = {
                "private_data_dir": str(data_dir),
                "project_dir": str(playbook.parent),
                "playbook": playbook.name,
                "extravars": extra_vars,
                "forks": forks,
                "quiet": True,
                "ident": "artifacts",
                "envvars": {**child_env(bin_dir), "ANSIBLE_SSH_CONTROL_PATH_DIR": control_dir},
            }
            if check:
                kwargs["cmdline"] = "--check"
            if self._ssh_key is not None:
                kwargs["ssh_key"] = self._ssh_key.read_text(encoding="utf-8")
            outcome = run_in_child(
                kwargs, on_event=lambda event: self._event(run_id, event), canceled=cancel.is_set
            )
            rc, error = outcome.rc, None if outcome.error is None else mask(outcome.error)
            status = {"successful": "successful", "canceled": "canceled"}.get(
                str(outcome.status), "failed" if outcome.error is None else "error"
            )
            if cancel.is_set():
                status = "interrupted" if self._stopping.is_set() else "canceled"
        except Exception as exc:  # recorded on the run: the worker thread must not die silent
            error = f"{type(exc).__name__}: {mask(str(exc))}"[:2000]
            log.exception("playbook run %d failed to run: %s", run_id, error)
        finally:
            # ansible-runner leaves the key it was handed in env/ssh_key, and the extra
            # vars (secrets unmasked) in env/extravars: never keep them
            (data_dir / "env" / "ssh_key").unlink(missing_ok=True)
            (data_dir / "env" / "extravars").unlink(missing_ok=True)
            shutil.rmtree(control_dir, ignore_errors=True)
            self._finish(run_id, status, rc, error)
            if prepared is not None:
                self._after(run_id, data_dir, prepared, cancelled=cancel.is_set())
            with self._lock:
                self._cancel.pop(run_id, None)
                self._threads.pop(run_id, None)

    def _event(self, run_id: int, event: dict[str, Any]) -> bool:
        """Store one job event and what it says of its host; True keeps it on disk."""
        data = event.get("event_data") or {}
        name = str(event.get("event", ""))
        host = data.get("host")
        task = data.get("task")
        with self._sessions() as session, session.begin():
            session.add(
                PlaybookEvent(
                    run_id=run_id, seq=int(event.get("counter", 0)), at=_now(), event=name[:64],
                    outlet_id=str(host)[:64] if host else None,
                    task=str(task)[:500] if task else None,
                    stdout=mask(str(event.get("stdout", ""))),
                )
            )  # fmt: skip
            if name == "playbook_on_stats":
                self._apply_stats(session, run_id, data)
                asked = (data.get("artifact_data") or {}).get("govedge_revoke") or []
                if isinstance(asked, list):
                    self._revoke_asked[run_id] = {str(o) for o in asked}
            elif host and name in _HOST_EVENTS:
                row = session.get(PlaybookHost, (run_id, str(host)))
                if row is not None:
                    self._count(row, name, data)
        return True

    def _after(self, run_id: int, data_dir: Path, prepared: run_files.Prepared, *,
               cancelled: bool) -> None:  # fmt: skip
        """What a run leaves: new host-key pins, attached archives, revocations asked."""
        asked = self._revoke_asked.pop(run_id, set())
        try:
            # the one-time tokens minted for the run leave its inventory file
            minted = run_files.TOKEN_VAR
            if any(minted in host_vars for host_vars in prepared.hosts.values()):
                hosts = {
                    outlet: {k: v for k, v in host_vars.items() if k != minted}
                    for outlet, host_vars in prepared.hosts.items()
                }
                (data_dir / "inventory" / "hosts.json").write_text(
                    json.dumps({"all": {"hosts": hosts}}), encoding="utf-8"
                )
            with self._sessions() as session, session.begin():
                pinned = run_files.pin_new_keys(
                    session, run_id, prepared.hosts, prepared.known_hosts
                )
                run_files.attach_archives(session, run_id, data_dir, set(prepared.hosts))
                statuses = {
                    row.outlet_id: row.status
                    for row in session.scalars(
                        select(PlaybookHost).where(PlaybookHost.run_id == run_id)
                    )
                }
            if pinned:
                log.info("playbook run %d pinned the host keys of %s", run_id, ", ".join(pinned))
            for outlet in sorted(asked & set(prepared.hosts)):
                # only for a host whose whole play went through (never on a failed one)
                if self._revoke is not None and not cancelled and statuses.get(outlet) in (
                    "ok", "changed",
                ):  # fmt: skip
                    self._revoke(outlet, f"playbook-run:{run_id}")
        except Exception:  # the run is recorded already; its aftermath must not kill the thread
            log.exception("playbook run %d: recording what it left failed", run_id)

    @staticmethod
    def _count(row: PlaybookHost, name: str, data: Mapping[str, Any]) -> None:
        changed = bool((data.get("res") or {}).get("changed"))
        kind = "changed" if name == "runner_on_ok" and changed else _HOST_EVENTS[name]
        if kind == "ok":
            row.ok += 1
        elif kind == "changed":
            row.ok, row.changed = row.ok + 1, row.changed + 1
        elif kind == "failed" and not data.get("ignore_errors"):
            row.failed += 1
        elif kind == "unreachable":
            row.unreachable += 1
        elif kind == "skipped":
            row.skipped += 1
        row.status = _host_status(row)
        row.last_task = str(data.get("task") or "")[:500] or row.last_task

    @staticmethod
    def _apply_stats(session: Session, run_id: int, data: Mapping[str, Any]) -> None:
        keys = ("ok", "changed", "failures", "dark", "skipped", "ignored", "rescued")
        stats = {k: dict(data.get(k) or {}) for k in keys}
        run = session.get(PlaybookRun, run_id)
        if run is not None:
            run.stats = stats
        for row in session.scalars(select(PlaybookHost).where(PlaybookHost.run_id == run_id)):
            if row.status == "held":
                continue
            row.ok = int(stats["ok"].get(row.outlet_id, row.ok))
            row.changed = int(stats["changed"].get(row.outlet_id, row.changed))
            row.failed = int(stats["failures"].get(row.outlet_id, row.failed))
            row.unreachable = int(stats["dark"].get(row.outlet_id, row.unreachable))
            row.skipped = int(stats["skipped"].get(row.outlet_id, row.skipped))
            row.status = _host_status(row)

    def _finish(self, run_id: int, status: str, rc: int | None, error: str | None) -> None:
        with self._sessions() as session, session.begin():
            run = session.get(PlaybookRun, run_id)
            if run is None:
                return
            if status == "interrupted":
                error = error or INTERRUPTED
            run.status, run.rc, run.error, run.finished_at = status, rc, error, _now()
            if status == "interrupted":
                session.flush()
                _interrupt_hosts(session, [run_id])
            for row in session.scalars(select(PlaybookHost).where(PlaybookHost.run_id == run_id)):
                if row.status == "pending":
                    row.status = status if status == "canceled" else "pending"
        log.info("playbook run %d finished: %s (rc %s)", run_id, status, rc)


def _interrupt_hosts(session: Session, run_ids: list[int]) -> None:
    """Hosts of interrupted runs that Ansible's closing stats did not settle (a host's
    status changes with each task until then): ``interrupted``, their counts kept."""
    runs = session.scalars(select(PlaybookRun).where(PlaybookRun.id.in_(run_ids)))
    settled = {run.id for run in runs if run.stats}  # JSON null or SQL NULL: not settled
    session.execute(
        update(PlaybookHost)
        .where(
            PlaybookHost.run_id.in_([r for r in run_ids if r not in settled]),
            PlaybookHost.status != "held",
        )
        .values(status="interrupted")
    )
    session.execute(
        update(PlaybookHost)
        .where(PlaybookHost.run_id.in_(list(settled)), PlaybookHost.status == "pending")
        .values(status="interrupted")
    )


def _mint_token(session: Session, outlet_id: str, run_id: int) -> str:
    """A one-time enrollment token for a host of a provisioning run."""
    from fleet_server.security.enrollment import create_enrollment

    made = create_enrollment(
        session, outlet_id=outlet_id, ttl=run_files.ENROLL_TTL, actor=f"playbook-run:{run_id}"
    )
    return made.token


def _host_status(row: PlaybookHost) -> str:
    """What a host's counts say: the worst first."""
    if row.unreachable:
        return "unreachable"
    if row.failed:
        return "failed"
    if row.changed:
        return "changed"
    if row.ok:
        return "ok"
    if row.skipped:
        return "skipped"
    return "pending"
