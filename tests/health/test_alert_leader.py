"""Exactly one alert-engine leader per database, against a real PostgreSQL.

Two alert engines in this process (each with its own connection pool, as two server
processes would have), then two real ``fleet-server run`` processes: one webhook per
alert event whatever the number of servers, and the standby takes over when the
leader dies. The alert conditions are made by writing presence rows straight into the
database (an outlet offline for an hour), so the test depends on the engines only.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text, update

from fleet_server.alerts.engine import AlertEngine
from fleet_server.alerts.leader import (
    ADVISORY_KEY,
    AdvisoryLockLeader,
    FileLockLeader,
    leadership_for,
)
from fleet_server.alerts.notify import WebhookNotifier
from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.migrate import upgrade
from fleet_server.models import Agent, Outlet
from govedge_testbed import Mosquitto
from tests.health.receiver import WebhookReceiver
from tests.server.helpers import FleetServer, poll

pytestmark = pytest.mark.postgres


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def _offline_outlet(engine: Engine, outlet_id: str) -> None:
    """An outlet whose agent has been offline for an hour (outlet_offline holds)."""
    since = datetime.now(UTC) - timedelta(hours=1)
    with make_sessionmaker(engine).begin() as session:
        session.add(Outlet(id=outlet_id, display_name=None, created_at=since))
        session.add(
            Agent(outlet_id=outlet_id, state="offline", state_since=since, session=1,
                  last_seq=0, last_seen=since, devices=[])
        )  # fmt: skip


def _set_online(engine: Engine, outlet_id: str) -> None:
    with make_sessionmaker(engine).begin() as session:
        session.execute(
            update(Agent)
            .where(Agent.outlet_id == outlet_id)
            .values(state="online", state_since=datetime.now(UTC))
        )


def _count(hook: WebhookReceiver, outlet_id: str, event: str) -> int:
    return sum(1 for e, rule in hook.events(outlet_id) if e == event and rule == "outlet_offline")


def test_two_engines_one_leader_one_notification_and_takeover(
    postgres_url: str, hook: WebhookReceiver
) -> None:
    dbs = [make_engine(postgres_url) for _ in range(2)]
    upgrade(dbs[0])
    notifiers = [WebhookNotifier([hook.url], backoff_s=0.1) for _ in dbs]
    engines = [
        AlertEngine(
            sessions=make_sessionmaker(db),
            interval_s=60,  # driven by hand below
            notifier=notifier,
            leader=AdvisoryLockLeader(db),
        )
        for db, notifier in zip(dbs, notifiers, strict=True)
    ]
    for notifier in notifiers:
        notifier.start()
    try:
        _offline_outlet(dbs[0], "lead-a")
        # Both evaluate, again and again, interleaved: only one of them ever does.
        ran = [[engine.evaluate_once() for engine in engines] for _ in range(5)]
        assert all(row == [True, False] for row in ran), ran
        poll(lambda: _count(hook, "lead-a", "opened") == 1, what="one opened webhook")

        # The leader's database session dies (as when its process or host does):
        # PostgreSQL releases the lock, the standby takes over at its next period.
        with dbs[1].connect() as admin:
            admin.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND objid::bigint = :key AND granted"
                ),
                {"key": ADVISORY_KEY},
            )
            admin.commit()
        _set_online(dbs[1], "lead-a")
        _offline_outlet(dbs[1], "lead-b")
        ran = [[engine.evaluate_once() for engine in reversed(engines)] for _ in range(3)]
        assert ran[0] == [True, False], ran  # the old leader noticed it lost the lock
        assert all(row == [True, False] for row in ran), ran
        poll(lambda: _count(hook, "lead-a", "resolved") == 1, what="one resolved webhook")
        poll(lambda: _count(hook, "lead-b", "opened") == 1, what="one opened webhook")
        assert not engines[0].leader.leading
        assert engines[1].leader.leading
        # A marker through each notifier, queued after everything the evaluations
        # queued: once both arrived, any duplicate would have arrived before them.
        for i, notifier in enumerate(notifiers):
            notifier.notify({"event": "marker", "rule": "marker", "outlet_id": f"marker-{i}"})
        poll(lambda: all(hook.events(f"marker-{i}") for i in range(len(notifiers))),
             what="both markers")  # fmt: skip
        assert _count(hook, "lead-a", "opened") == 1
        assert _count(hook, "lead-a", "resolved") == 1
        assert _count(hook, "lead-b", "opened") == 1
    finally:
        for engine in engines:
            engine.leader.release()
        for notifier in notifiers:
            notifier.stop()
        for db in dbs:
            db.dispose()


def test_sqlite_file_lock_one_leader(tmp_path: Path) -> None:
    """On SQLite the leader holds an flock beside the database file; release hands over."""
    db = make_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    try:
        sessions = make_sessionmaker(db)
        first = leadership_for(db, sessions, interval_s=5)
        second = FileLockLeader(sessions, tmp_path / "fleet.db.alert-leader.lock")
        assert isinstance(first, FileLockLeader)
        assert first.acquire()
        assert not second.acquire()
        first.release()
        assert second.acquire()
        assert not first.acquire()
        second.release()
    finally:
        db.dispose()


def _metric(server: FleetServer, name: str) -> float:
    body = server.http.get("/metrics").text
    match = re.search(rf"^{re.escape(name)} (\S+)$", body, re.MULTILINE)
    assert match is not None, f"no {name} in /metrics"
    return float(match.group(1))


def _is_leader(server: FleetServer) -> bool:
    return _metric(server, "govedge_alert_engine_leader") == 1.0


def _sent(server: FleetServer) -> float:
    return _metric(server, 'govedge_alert_webhooks_total{outcome="sent"}')


def _periods_passed(
    leader: FleetServer, others: list[FleetServer], hook: WebhookReceiver, *, sent_before: int = 0
) -> None:
    """Wait until the leader evaluated three more times and every webhook any live
    server queued has arrived: a duplicate notification would be in ``hook`` by then.

    ``sent_before``: deliveries of servers no longer running."""
    mark = _metric(leader, "govedge_alert_evaluations_total")
    servers = [leader, *others]
    poll(lambda: _metric(leader, "govedge_alert_evaluations_total") >= mark + 3
         and all(_metric(s, "govedge_alert_webhooks_pending") == 0 for s in servers)
         and sum(_sent(s) for s in servers) + sent_before == len(hook.received),
         what="three more evaluation periods, every webhook delivered")  # fmt: skip


def test_two_server_processes_notify_once_and_fail_over(
    broker: Mosquitto, postgres_url: str, hook: WebhookReceiver, tmp_path: Path
) -> None:
    env = {
        "GOVEDGE_API_AUTH": "off",
        "GOVEDGE_PKI_DIR": str(tmp_path / "pki"),
        "GOVEDGE_ALERT_EVAL_INTERVAL_S": "0.2",
        "GOVEDGE_ALERT_WEBHOOKS": json.dumps([hook.url]),
        "GOVEDGE_ALERT_WEBHOOK_BACKOFF_S": "0.1",
    }
    servers = [
        FleetServer(mqtt_url=broker.url, database_url=postgres_url, workdir=tmp_path, **env)
        for _ in range(2)
    ]
    db = make_engine(postgres_url)
    try:
        for server in servers:  # one after the other: each upgrades the schema first
            server.start()
        leaders = poll(
            lambda: (flags := [_is_leader(s) for s in servers]) and sum(flags) == 1 and flags,
            what="exactly one leader",
        )
        leader, standby = (servers[0], servers[1]) if leaders[0] else (servers[1], servers[0])

        _offline_outlet(db, "proc-a")
        poll(lambda: _count(hook, "proc-a", "opened") == 1, what="opened webhook")
        _periods_passed(leader, [standby], hook)
        assert _count(hook, "proc-a", "opened") == 1
        assert not _is_leader(standby)

        assert leader.proc is not None
        os.kill(leader.proc.pid, signal.SIGKILL)
        leader.proc.wait(timeout=10)
        sent_by_killed = len(hook.received)
        poll(lambda: _is_leader(standby), what="the standby takes over")
        _set_online(db, "proc-a")
        _offline_outlet(db, "proc-b")
        poll(lambda: _count(hook, "proc-a", "resolved") == 1, what="resolved webhook")
        poll(lambda: _count(hook, "proc-b", "opened") == 1, what="opened webhook")
        _periods_passed(standby, [], hook, sent_before=sent_by_killed)
        assert _count(hook, "proc-a", "opened") == 1
        assert _count(hook, "proc-a", "resolved") == 1
        assert _count(hook, "proc-b", "opened") == 1
    finally:
        for server in servers:
            if server.proc is not None and server.proc.poll() is None:
                assert server.stop() == 0, server.stderr()
            else:
                server.http.close()
        db.dispose()


def test_a_hung_leader_loses_the_lead_and_stands_down_when_it_wakes(
    broker: Mosquitto, postgres_url: str, hook: WebhookReceiver, tmp_path: Path
) -> None:
    """SIGSTOP (a frozen VM, a hung PC): the socket stays open, so PostgreSQL ends the
    leader's session by its idle timeouts (30 s here); the standby then leads, and the
    old leader, woken, finds its session gone and stands by: no notification twice."""
    env = {
        "GOVEDGE_API_AUTH": "off",
        "GOVEDGE_PKI_DIR": str(tmp_path / "pki"),
        "GOVEDGE_ALERT_EVAL_INTERVAL_S": "0.2",
        "GOVEDGE_ALERT_WEBHOOKS": json.dumps([hook.url]),
        "GOVEDGE_ALERT_WEBHOOK_BACKOFF_S": "0.1",
    }
    servers = [
        FleetServer(mqtt_url=broker.url, database_url=postgres_url, workdir=tmp_path, **env)
        for _ in range(2)
    ]
    db = make_engine(postgres_url)
    stopped: int | None = None
    try:
        for server in servers:
            server.start()
        leaders = poll(
            lambda: (flags := [_is_leader(s) for s in servers]) and sum(flags) == 1 and flags,
            what="exactly one leader",
        )
        leader, standby = (servers[0], servers[1]) if leaders[0] else (servers[1], servers[0])
        assert leader.proc is not None
        stopped = leader.proc.pid
        os.kill(stopped, signal.SIGSTOP)
        _offline_outlet(db, "hung-a")
        # The idle timeout is max(30 s, 3 x 0.2 s): the standby leads within ~30 s.
        poll(lambda: _is_leader(standby), timeout=60, what="the standby takes over")
        poll(lambda: _count(hook, "hung-a", "opened") == 1, what="opened webhook")
        os.kill(stopped, signal.SIGCONT)
        stopped = None
        poll(lambda: not _is_leader(leader), what="the old leader stands down")
        _set_online(db, "hung-a")
        poll(lambda: _count(hook, "hung-a", "resolved") == 1, what="resolved webhook")
        _periods_passed(standby, [leader], hook)
        assert _count(hook, "hung-a", "opened") == 1
        assert _count(hook, "hung-a", "resolved") == 1
        assert _is_leader(standby)
        assert not _is_leader(leader)
    finally:
        if stopped is not None:
            os.kill(stopped, signal.SIGCONT)
        for server in servers:
            if server.proc is not None and server.proc.poll() is None:
                assert server.stop() == 0, server.stderr()
            else:
                server.http.close()
        db.dispose()
