"""The alert pass's per-outlet rules in a child process (``alerts.outlet_pass``).

What an operator relies on: the child opens and resolves exactly the alerts the
in-thread pass does; a child that dies or hangs fails that one pass (alerts stay as
they were, nothing is resolved by a pass that did not run) and the next pass works
again; stopping the server ends the child. Real SQLite files and real PostgreSQL, a
real spawned process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import select, update

from fleet_server.alerts.engine import AlertEngine
from fleet_server.alerts.outlet_pass import OutletPassError, OutletPassProcess
from fleet_server.db import make_sessionmaker
from fleet_server.health.tables import Alert, DeviceState
from tests.health.test_alert_facts import LONG_AGO, NOW, _fill
from tests.server.helpers import poll

pytestmark = pytest.mark.timeout(120)


def _url(backend: str, tmp_path: Path, name: str, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / name}"
    url: str = request.getfixturevalue("postgres_cluster").create_database(
        f"t_{os.urandom(6).hex()}"
    )
    return url


def _open(engine: Any) -> set[tuple[str, str, str]]:
    with make_sessionmaker(engine)() as session:
        return {
            (a.rule, a.outlet_id, a.device_id)
            for a in session.scalars(select(Alert).where(Alert.state == "open"))
        }


def _children() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_the_child_opens_and_resolves_what_the_thread_does(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    in_thread = _fill(_url(backend, tmp_path, "thread.db", request))
    in_child = _fill(_url(backend, tmp_path, "child.db", request))
    child = OutletPassProcess(
        in_child.url.render_as_string(hide_password=False),
        timezone="Asia/Shanghai",
        timeout_s=60,
    )
    engines = [
        AlertEngine(sessions=make_sessionmaker(in_thread), interval_s=60),
        AlertEngine(sessions=make_sessionmaker(in_child), interval_s=60, outlet_pass=child),
    ]
    try:
        for engine in engines:
            assert engine.evaluate_once(now=NOW)
        expected = _open(in_thread)
        assert ("device_offline", "f-1", "gone") in expected
        assert _open(in_child) == expected
        # It ran in a child of this process, not here.
        assert child.pid is not None
        assert child.pid != os.getpid()
        assert child.pid in _children()

        # The device comes back: both resolve it, and the child is the same one.
        pid = child.pid
        for db in (in_thread, in_child):
            with make_sessionmaker(db).begin() as session:
                session.execute(
                    update(DeviceState).where(DeviceState.device_id == "gone").values(state="ready")
                )
        for engine in engines:
            engine.evaluate_once(now=NOW)
        assert ("device_offline", "f-1", "gone") not in _open(in_child)
        assert _open(in_child) == _open(in_thread)
        assert child.pid == pid
        assert child.starts == 1
    finally:
        for engine in engines:
            engine.stop(timeout=5)
        in_thread.dispose()
        in_child.dispose()
    # Stopping the engine ended its child.
    assert pid not in _children()


def test_a_child_killed_or_hung_fails_one_pass_and_the_next_works(tmp_path: Path) -> None:
    db = _fill(f"sqlite:///{tmp_path / 'fleet.db'}")
    child = OutletPassProcess(
        db.url.render_as_string(hide_password=False), timezone="Asia/Shanghai", timeout_s=3
    )
    engine = AlertEngine(sessions=make_sessionmaker(db), interval_s=60, outlet_pass=child)
    try:
        engine.evaluate_once(now=NOW)
        before = _open(db)
        assert ("device_offline", "f-1", "gone") in before

        # Killed between passes: this pass fails, and resolves nothing.
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        with pytest.raises(OutletPassError, match="ended"):
            engine.evaluate_once(now=NOW)
        assert _open(db) == before
        # The next pass starts a new child and sees the same fleet.
        engine.evaluate_once(now=NOW)
        assert child.starts == 2
        assert _open(db) == before

        # Hung (stopped): the pass gives up after its timeout and the child is killed.
        hung = child.pid
        assert hung is not None
        os.kill(hung, signal.SIGSTOP)
        with pytest.raises(OutletPassError, match="no answer"):
            engine.evaluate_once(now=NOW)
        assert not psutil.pid_exists(hung) or psutil.Process(hung).status() == "zombie"
        assert _open(db) == before
        engine.evaluate_once(now=NOW)
        assert child.starts == 3
        assert _open(db) == before
    finally:
        engine.stop(timeout=5)
        db.dispose()


def test_a_failing_read_in_the_child_is_counted_and_the_engine_lives_on(
    tmp_path: Path,
) -> None:
    db = _fill(f"sqlite:///{tmp_path / 'fleet.db'}")
    child = OutletPassProcess(
        db.url.render_as_string(hide_password=False), timezone="Asia/Shanghai", timeout_s=30
    )
    engine = AlertEngine(sessions=make_sessionmaker(db), interval_s=0.2, outlet_pass=child)
    try:
        engine.evaluate_once(now=NOW)
        before = _open(db)
        with db.begin() as conn:  # a table the pass reads, gone (as in a broken migration)
            conn.exec_driver_sql("ALTER TABLE device_states RENAME TO device_states_away")
        with pytest.raises(OutletPassError, match="device_states"):
            engine.evaluate_once(now=NOW)
        assert _open(db) == before
        # The engine's own loop counts the failures (govedge_alert_evaluation_errors)...
        engine.start()
        poll(lambda: engine.errors >= 2, timeout=30)
        assert _open(db) == before
        with db.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE device_states_away RENAME TO device_states")
        # ...and evaluates again once the table is back, with the same child.
        done = engine.evaluations
        poll(lambda: engine.evaluations >= done + 2, timeout=30)
        assert child.starts == 1
        assert ("device_offline", "f-1", "gone") in _open(db)
    finally:
        engine.stop(timeout=5)
        db.dispose()


@pytest.mark.parametrize("child", [False, True], ids=["thread", "child"])
def test_an_alert_is_written_only_when_its_figures_change(child: bool, tmp_path: Path) -> None:
    """``updated_at`` moves with the alert's figures, not with every pass: a fleet with
    thousands of steady alerts is not rewritten every 5 s."""
    db = _fill(f"sqlite:///{tmp_path / 'fleet.db'}")
    outlet_pass = (
        OutletPassProcess(
            db.url.render_as_string(hide_password=False), timezone="Asia/Shanghai", timeout_s=30
        )
        if child
        else None
    )
    engine = AlertEngine(sessions=make_sessionmaker(db), interval_s=60, outlet_pass=outlet_pass)

    def alert(rule: str, device: str) -> Alert:
        with make_sessionmaker(db)() as session:
            return session.scalars(
                select(Alert).where(
                    Alert.rule == rule, Alert.device_id == device, Alert.outlet_id == "f-1"
                )
            ).one()

    try:
        engine.evaluate_once(now=NOW)
        later = NOW + timedelta(minutes=1)
        engine.evaluate_once(now=later)
        steady = alert("read_failure_rate", "failing")  # 30 % failed, both times
        assert steady.updated_at == NOW
        assert steady.value == 0.3
        counting = alert("device_offline", "gone")  # its value is how long it has been down
        assert counting.updated_at == later
        assert counting.value == (later - LONG_AGO).total_seconds()
        assert counting.state == "open"
    finally:
        engine.stop(timeout=5)
        db.dispose()


_PARENT = """
import sys
from datetime import UTC, datetime
from fleet_server.alerts.outlet_pass import OutletPassProcess, _Request

child = OutletPassProcess(sys.argv[1], timezone="Asia/Shanghai", timeout_s=30)
child.conditions(now=datetime.now(UTC), already_open=set())
# A pass whose answer this process never reads: a server SIGKILLed mid-pass leaves the
# child's answer unread, and the kernel then resets the pipe under the child's recv.
conn = child._conn
conn.send(_Request(now=datetime.now(UTC), already_open=frozenset()))
assert conn.poll(30)
print(child.pid, flush=True)
sys.stdin.read()
"""


def test_a_child_whose_server_is_killed_mid_pass_ends_without_a_traceback(
    tmp_path: Path,
) -> None:
    """The server's log is what an operator reads after a crash: the child's own end
    must not add a traceback that looks like a second failure."""
    db = _fill(f"sqlite:///{tmp_path / 'fleet.db'}")
    url = db.url.render_as_string(hide_password=False)
    db.dispose()
    stderr = tmp_path / "stderr.log"
    with (
        stderr.open("wb") as err,
        subprocess.Popen(
            [sys.executable, "-c", _PARENT, url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
        ) as parent,
    ):  # fmt: skip
        try:
            assert parent.stdout is not None
            child = psutil.Process(int(parent.stdout.readline()))
            parent.kill()
            parent.wait(timeout=10)
            child.wait(timeout=30)
        finally:
            parent.kill()
    assert "Traceback" not in stderr.read_text(), stderr.read_text()
