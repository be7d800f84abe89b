"""The alert pass's per-outlet part in a child process of its own.

The fleet server's ingest, delivery worker and web server are threads of one process,
under one GIL. Applying the rules to every outlet is pure Python over the whole fleet
(about 0.25 s at 10,000 outlets): run in the engine's thread it stalled the other
threads, and a clerk's submission that arrived during a pass waited for it, even paced
(docs/performance.md, "Clerk → upstream"). In a child process the pass has an
interpreter of its own; the engine's thread only waits for the answer.

The child is started with ``spawn`` (the server has threads; ``fork`` would copy their
locks mid-use) on the first pass, so a standby server that never leads never starts
one. It opens its own database engine and keeps the desired-config cache
(``alerts.config_parts``) between passes. It only reads: every write (opening,
updating, resolving alerts) stays with the engine in the server process.

A child that dies or does not answer within ``timeout_s`` is killed; that pass fails
(counted as an evaluation error) and the next one starts a new child. The child ends
when the server closes the pipe, and also when the server dies (its pipe ends).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import traceback
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from zoneinfo import ZoneInfo

from fleet_server.alerts.conditions import Condition
from fleet_server.alerts.config_parts import ConfigParts

__all__ = ["OutletPassError", "OutletPassProcess"]

logger = logging.getLogger(__name__)

_START_TIMEOUT_S = 60.0  # a spawned interpreter importing the server's modules
_NICENESS = 10


class OutletPassError(RuntimeError):
    """The child failed this pass (its error, or it died or hung and was killed)."""


@dataclass(frozen=True, slots=True)
class _Request:
    now: datetime
    already_open: frozenset[tuple[str, str, str]]


class OutletPassProcess:
    """Run ``engine.outlet_conditions`` in a child process, one pass at a time."""

    def __init__(self, database_url: str, *, timezone: str, timeout_s: float) -> None:
        self._database_url = database_url
        self._timezone = timezone
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self.starts = 0
        self.pid: int | None = None

    def conditions(
        self, *, now: datetime, already_open: set[tuple[str, str, str]]
    ) -> list[Condition]:
        """The per-outlet conditions holding at ``now``, computed by the child."""
        with self._lock:
            conn = self._conn if self._conn is not None else self._start()
            try:
                conn.send(_Request(now=now, already_open=frozenset(already_open)))
                if not conn.poll(self._timeout_s):
                    self._kill()
                    raise OutletPassError(
                        f"the alert pass's child process gave no answer in {self._timeout_s:g} s;"
                        " it was stopped and the next pass starts a new one"
                    )
                ok, answer = conn.recv()
            except (EOFError, OSError) as exc:
                self._kill()
                raise OutletPassError(
                    "the alert pass's child process ended; the next pass starts a new one"
                ) from exc
        if not ok:
            raise OutletPassError(f"the alert pass failed in its child process:\n{answer}")
        return [
            Condition(
                rule=rule, outlet_id=outlet_id, device_id=device_id, severity=severity,
                summary=summary, value=value, detail=detail,
            )
            for rule, outlet_id, device_id, severity, summary, value, detail in answer
        ]  # fmt: skip

    def _start(self) -> Connection:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_serve,
            args=(theirs, self._database_url, self._timezone),
            name="govedge-alert-pass",
            daemon=True,
        )
        process.start()
        theirs.close()
        self._process, self._conn = process, ours
        self.starts += 1
        self.pid = process.pid
        # The child says it is ready once its imports are done: a slow start (a loaded
        # machine importing the server's modules) is not taken for a hung pass.
        try:
            ready = ours.poll(_START_TIMEOUT_S) and ours.recv() is True
        except (EOFError, OSError):  # it died while starting (its error is on stderr)
            ready = False
        if not ready:
            self._kill()
            raise OutletPassError("the alert pass's child process did not start")
        logger.info("alert pass: child process %s started", process.pid)
        return ours

    def _kill(self) -> None:
        self._end(wait_s=0.0)

    def close(self) -> None:
        """End the child (it exits when its pipe closes; killed if it does not)."""
        with self._lock:
            self._end(wait_s=5.0)

    def _end(self, *, wait_s: float) -> None:
        """Close the pipe, give the child ``wait_s`` to exit by itself, then kill it."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        self.pid = None
        if conn is not None:
            conn.close()
        if process is None:
            return
        if wait_s > 0:
            process.join(timeout=wait_s)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)


def _serve(conn: Connection, database_url: str, timezone: str) -> None:
    """The child: answer each request with ``(True, conditions)`` or ``(False, error)``."""
    # Imported here, in the child: the parent's module stays light to import.
    from fleet_server.alerts.engine import load_rulebook, outlet_conditions
    from fleet_server.db import make_engine, make_sessionmaker

    # Background work: on a busy machine the server's own threads, the broker and the
    # database come first (raising one's niceness needs no privilege).
    os.nice(_NICENESS)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    zone = ZoneInfo(timezone)
    parts = ConfigParts()
    conn.send(True)
    try:
        while True:
            try:
                request: _Request = conn.recv()
            except (EOFError, OSError):  # the server closed the pipe, or died (a reset)
                return
            try:
                with sessions() as session:
                    found = outlet_conditions(
                        session,
                        load_rulebook(session),
                        now=request.now,
                        timezone=zone,
                        already_open=set(request.already_open),
                        config_parts=parts,
                    )
                    session.rollback()  # it only read
                # Plain tuples: unpickling a slotted dataclass per condition cost the
                # server ~10 us each (0.1 s per pass with 10,000 alerts open).
                answer: tuple[bool, object] = (
                    True,
                    [
                        (c.rule, c.outlet_id, c.device_id, c.severity, c.summary, c.value,
                         c.detail)
                        for c in found
                    ],
                )  # fmt: skip
            except Exception:  # the child must answer whatever went wrong
                # A database error's text carries no row values (make_engine hides them).
                answer = (False, traceback.format_exc(limit=8))
            try:
                conn.send(answer)
            except (BrokenPipeError, OSError):
                return
    finally:
        engine.dispose()
