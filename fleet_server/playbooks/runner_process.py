"""ansible-runner in a child process of its own, its job events sent back over a queue.

ansible-runner's own Python (reading ansible-playbook's output, building every job
event) would otherwise run on a thread of the server and compete with the API and the
ingest for the GIL; in a child process it costs the server only the events it stores.
The child is started with ``spawn`` (a fresh interpreter: no copy of the server's
sockets, database pool or threads), and ends itself when the run does.
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any

__all__ = ["ChildOutcome", "run_in_child"]

_POLL_S = 0.5


@dataclass(frozen=True, slots=True)
class ChildOutcome:
    """How the run ended: ansible-runner's status and rc, or why the child failed."""

    status: str | None
    rc: int | None
    error: str | None = None


def _child(kwargs: dict[str, Any], events: Any, cancel: ProcessEvent) -> None:
    """In the child: run, forward every event, then say how it ended."""
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
        target=_child, args=(kwargs, events, cancel), name="govedge-playbook-run", daemon=True
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
