"""ansible-runner in a child process of its own, its job events sent back over a queue.

ansible-runner's own Python (reading ansible-playbook's output, building every job
event) would otherwise run on a thread of the server and compete with the API and the
ingest for the GIL; in a child process it costs the server only the events it stores.
The child is started with ``spawn`` (a fresh interpreter: no copy of the server's
sockets, database pool or threads), and ends itself when the run does.

It also ends when the server dies, however it dies (SIGKILL, OOM): a run must not go on
changing outlet PCs while the server records it interrupted. The kernel sends it
SIGTERM when the server's thread that started it is gone (``PR_SET_PDEATHSIG``), and a
thread of its own checks its parent every half second besides (the same without
prctl); either way it signals the process group of every process below it
(ansible-playbook leads one, pexpect's ``setsid``, and each of its forks another:
the commands they run are in those) and exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any

__all__ = ["ChildOutcome", "run_in_child"]

_POLL_S = 0.5
_PR_SET_PDEATHSIG = 1
# After SIGTERM, how long the run's processes get to end before SIGKILL.
_TERM_GRACE_S = 2.0


@dataclass(frozen=True, slots=True)
class ChildOutcome:
    """How the run ended: ansible-runner's status and rc, or why the child failed."""

    status: str | None
    rc: int | None
    error: str | None = None


def _descendants() -> list[int]:
    """Pids of every process below this one (from /proc): ansible-playbook, its forks
    (each in a session of its own) and what they run."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[1].isdigit():
            parents[int(entry)] = int(fields[1])
    found: list[int] = []
    level = {os.getpid()}
    while level:
        level = {pid for pid, parent in parents.items() if parent in level} - set(found)
        found.extend(sorted(level))
    return found


def _signal_groups(pids: list[int], sig: int) -> None:
    own = os.getpgrp()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            group = os.getpgid(pid)
            if group == own:  # never the server's group: this child is in it
                os.kill(pid, sig)
            else:
                os.killpg(group, sig)


def _end_the_run() -> None:
    """The server is gone: end everything this child started, then the child."""
    pids = _descendants()
    _signal_groups(pids, signal.SIGTERM)
    end = time.monotonic() + _TERM_GRACE_S
    while time.monotonic() < end and any(os.path.exists(f"/proc/{pid}") for pid in pids):
        time.sleep(0.1)
    _signal_groups(pids, signal.SIGKILL)
    os._exit(1)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_POLL_S)
    _end_the_run()


def _die_with(parent: int) -> None:
    """End this child (and the run's processes) when ``parent`` dies."""
    signal.signal(signal.SIGTERM, lambda _sig, _frame: _end_the_run())
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watch",
                     daemon=True).start()  # fmt: skip
    if os.getppid() != parent:  # died before the death signal was set
        _end_the_run()


def _child(kwargs: dict[str, Any], events: Any, cancel: ProcessEvent, parent: int) -> None:
    """In the child: run, forward every event, then say how it ended."""
    _die_with(parent)
    import ansible_runner  # type: ignore[import-untyped]  # the server extra's; no stubs

    def forward(event: dict[str, Any]) -> bool:
        events.put(("event", event, None))
        return True  # keep it on disk in the run's artifacts too

    try:
        result = ansible_runner.run(**kwargs, event_handler=forward, cancel_callback=cancel.is_set)
        events.put(("done", str(result.status), result.rc))
    except Exception as exc:  # reported to the parent; the child ends either way
        events.put(("error", f"{type(exc).__name__}: {exc}", None))
    events.close()
    events.join_thread()


def run_in_child(
    kwargs: dict[str, Any],
    *,
    on_event: Callable[[dict[str, Any]], object],
    canceled: Callable[[], bool],
) -> ChildOutcome:
    """Run ``ansible_runner.run(**kwargs)`` in a child; ``on_event`` gets each job event
    here (in the caller's thread); ``canceled()`` is polled and passed on to the child."""
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    cancel = context.Event()
    child = context.Process(
        target=_child,
        args=(kwargs, events, cancel, os.getpid()),
        name="govedge-playbook-run",
        daemon=True,
    )
    child.start()
    try:
        while True:
            if canceled():
                cancel.set()
            try:
                kind, first, second = events.get(timeout=_POLL_S)
            except queue.Empty:
                if not child.is_alive():
                    return ChildOutcome(
                        None, None, f"the run's process died (exit {child.exitcode})"
                    )
                continue
            if kind == "event":
                on_event(first)
            elif kind == "done":
                return ChildOutcome(str(first), second)
            else:
                return ChildOutcome(None, None, str(first))
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()
            child.join(5)
        events.close()
