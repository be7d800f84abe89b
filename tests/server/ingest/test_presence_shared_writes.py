"""Two share-group workers' presence stores over one real PostgreSQL database.

Telemetry's presence is written in one statement without a locked read (the common
write of a share group); the rules of the locked merge must still hold: the later
last_seq/last_seen win whichever worker writes last, a death another worker stored is
not undone, and a newer session another worker stored is adopted, not overwritten.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.ingest.presence import PresenceTracker, UplinkMessage
from fleet_server.ingest.presence_store import PresenceStore
from fleet_server.ingest.stats import IngestStats
from fleet_server.migrate import upgrade
from fleet_server.models import Agent
from govedge_wire import Birth, Death, Telemetry

pytestmark = pytest.mark.postgres

OUTLETS = [f"township-{n:03d}" for n in range(40)]
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class _Worker:
    """One worker's tracker and store; ``send`` applies messages, ``flush`` writes."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.stats = IngestStats()
        self.tracker = PresenceTracker(rebirth_interval_s=10, shared=True)
        self.store = PresenceStore(sessions=sessions, stats=self.stats, tracker=self.tracker)

    def send(self, message: UplinkMessage, at_s: float) -> None:
        if self.tracker.needs_refresh(message):
            self.store.reload(message.outlet_id)
        outcome = self.tracker.apply(message, received_at=_at(at_s), now=at_s)
        assert outcome.ignored is None, outcome.ignored


@pytest.fixture
def sessions(postgres_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(postgres_url)
    upgrade(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


def _rows(sessions: sessionmaker[Session]) -> dict[str, Agent]:
    with sessions() as session:
        return {row.outlet_id: row for row in session.scalars(select(Agent))}


def _birth(outlet: str, session_id: int, version: str = "1.2.3") -> Birth:
    return Birth(
        outlet_id=outlet, session=session_id, seq=0, agent_version=version, hostname="pc",
        os="Debian 12", config_version=1, telemetry_interval_s=30, keepalive_s=60,
    )  # fmt: skip


def _born(sessions: sessionmaker[Session], session_id: int = 5) -> tuple[_Worker, _Worker]:
    a, b = _Worker(sessions), _Worker(sessions)
    for outlet in OUTLETS:
        a.send(_birth(outlet, session_id), 0)
    a.store.flush()
    return a, b


def _telemetry(outlet: str, seq: int, **metrics: Any) -> Telemetry:
    return Telemetry(outlet_id=outlet, session=5, seq=seq, metrics=metrics)


def test_two_workers_interleaved_keep_the_later_seq_seen_and_metrics(
    sessions: sessionmaker[Session],
) -> None:
    a, b = _born(sessions)
    # The broker deals each outlet's messages to both workers in turn.
    for seq in range(1, 7):
        worker = a if seq % 2 else b
        for outlet in OUTLETS:
            worker.send(_telemetry(outlet, seq, cpu_percent=float(seq)), seq)
    # b (seq 6, newest) writes first; a's older seq 5 must not go back over it.
    statements: list[str] = []
    engine = sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    b.store.flush()
    a.store.flush()
    # One statement per worker for all 40 outlets: no locked read of full rows.
    assert len(statements) == 2, statements
    for row in _rows(sessions).values():
        assert (row.session, row.last_seq, row.last_seen) == (5, 6, _at(6))
        assert row.last_metrics == {"cpu_percent": 6.0}
        assert (row.state, row.agent_version) == ("online", "1.2.3")
    assert a.tracker.dirty() == []
    assert b.tracker.dirty() == []
    assert a.stats.snapshot().db_errors == 0 == b.stats.snapshot().db_errors


def test_a_death_another_worker_stored_is_not_undone_by_late_telemetry(
    sessions: sessionmaker[Session],
) -> None:
    a, b = _born(sessions)
    for outlet in OUTLETS:
        a.send(_telemetry(outlet, 1, cpu_percent=1.0), 1)
    a.store.flush()
    outlet = OUTLETS[3]
    b.send(Death(outlet_id=outlet, session=5, seq=0, reason="will"), 3)
    b.store.flush()
    a.send(_telemetry(outlet, 2, cpu_percent=2.0), 2)  # sent before the will, late
    a.store.flush()
    row = _rows(sessions)[outlet]
    assert (row.state, row.state_since) == ("offline", _at(3))
    assert (row.last_seq, row.last_seen) == (2, _at(2))  # the later of the two


def test_a_newer_session_another_worker_stored_is_adopted(
    sessions: sessionmaker[Session],
) -> None:
    a, b = _born(sessions)
    outlet = OUTLETS[7]
    a.send(_telemetry(outlet, 1, cpu_percent=1.0), 1)
    a.store.flush()
    # The agent restarted: its new birth reached b; a still holds a late message of 5.
    b.send(_birth(outlet, 6, "1.2.4"), 4)
    b.store.flush()
    a.send(_telemetry(outlet, 2, cpu_percent=2.0), 2)
    a.store.flush()
    row = _rows(sessions)[outlet]
    assert (row.session, row.agent_version, row.last_seq, row.last_seen) == (6, "1.2.4", 0, _at(4))
    mine = a.tracker.get(outlet)
    assert mine is not None
    assert mine.session == 6
    assert a.tracker.dirty() == []


def test_sessions_born_at_another_worker_are_read_in_one_query(
    sessions: sessionmaker[Session],
) -> None:
    _, b = _born(sessions)  # b has never heard of the outlets
    first = [_telemetry(outlet, 1, cpu_percent=1.0) for outlet in OUTLETS]
    assert all(b.tracker.needs_refresh(message) for message in first)
    statements: list[str] = []
    engine = sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    b.store.reload_many(OUTLETS)
    assert len(statements) == 1, statements
    assert not any(b.tracker.needs_refresh(message) for message in first)
    for message in first:
        assert b.tracker.apply(message, received_at=_at(1), now=1).ignored is None


def test_telemetry_presence_waits_out_a_database_outage(tmp_path: Any) -> None:
    """PostgreSQL stopped under the one-statement write: counted as a database error,
    no batch counted as committed, every record kept dirty; written once it is back."""
    from govedge_testbed import Postgres
    from tests.conftest import started_service

    cluster = started_service(Postgres)
    engine = make_engine(cluster.create_database("outage"))
    try:
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        a, _ = _born(sessions)
        committed = a.stats.snapshot().batches_committed
        for outlet in OUTLETS:
            a.send(_telemetry(outlet, 1, cpu_percent=1.0), 1)
        cluster.pause()
        try:
            a.store.flush()
        finally:
            cluster.resume()
        assert a.stats.snapshot().db_errors == 1
        assert a.stats.snapshot().batches_committed == committed
        assert len(a.tracker.dirty()) == len(OUTLETS)
        a.store.flush()
        assert a.tracker.dirty() == []
        assert {(r.last_seq, r.last_seen) for r in _rows(sessions).values()} == {(1, _at(1))}
    finally:
        engine.dispose()
        cluster.stop()
