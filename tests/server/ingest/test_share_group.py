"""Worker heartbeats and fleet-wide staleness (``ingest.share_group``) on real databases."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.ingest.share_group import (
    FORGET_AFTER,
    beat,
    count_workers,
    fleet_lock,
    forget,
    live_connected,
    mark_fleet_stale,
)
from fleet_server.migrate import upgrade
from fleet_server.models import Agent, Outlet

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LEASE_S = 15.0


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fleet.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


def _beat(sessions: sessionmaker[Session], worker: str, *, connected: bool, at: float) -> None:
    with sessions.begin() as session:
        fleet_lock(session)
        beat(session, worker_id=worker, server_id="fleet-a", connected=connected, now=_at(at))


def _live(sessions: sessionmaker[Session], *, at: float, **kwargs: object) -> list[str]:
    with sessions.begin() as session:
        return live_connected(session, now=_at(at), lease_s=LEASE_S, **kwargs)  # type: ignore[arg-type]


def test_live_connected_means_connected_and_inside_the_lease(
    sessions: sessionmaker[Session],
) -> None:
    _beat(sessions, "w1", connected=True, at=0)
    _beat(sessions, "w2", connected=False, at=0)
    _beat(sessions, "w3", connected=True, at=10)
    assert _live(sessions, at=10) == ["w1", "w3"]
    assert _live(sessions, at=10, exclude="w1") == ["w3"]
    assert _live(sessions, at=16) == ["w3"]  # w1's beat is older than the lease
    assert _live(sessions, at=10, since=_at(5)) == ["w3"]  # beaten after a start at 5
    _beat(sessions, "w3", connected=False, at=11)  # w3 lost the broker
    assert _live(sessions, at=11) == ["w1"]
    with sessions.begin() as session:
        forget(session, "w1")
        assert count_workers(session) == 2


def test_rows_of_workers_gone_for_long_are_deleted(sessions: sessionmaker[Session]) -> None:
    _beat(sessions, "old", connected=True, at=0)
    _beat(sessions, "new", connected=True, at=FORGET_AFTER.total_seconds() + 1)
    with sessions.begin() as session:
        assert count_workers(session) == 1


def test_mark_fleet_stale_touches_online_outlets_only(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        for outlet_id, state in (("a", "online"), ("b", "offline"), ("c", "online")):
            session.add(Outlet(id=outlet_id, created_at=T0))
            session.add(Agent(outlet_id=outlet_id, state=state, state_since=T0, devices=[]))
    with sessions.begin() as session:
        assert mark_fleet_stale(session, at=_at(30)) == 2
    with sessions.begin() as session:
        rows = session.execute(select(Agent.outlet_id, Agent.state, Agent.state_since)).all()
    assert sorted(tuple(row) for row in rows) == [
        ("a", "stale", _at(30)),
        ("b", "offline", T0),
        ("c", "stale", _at(30)),
    ]


@pytest.mark.postgres
def test_two_workers_losing_the_broker_together_the_second_sees_the_first(
    postgres_url: str,
) -> None:
    """The lock serialises the decisions: exactly one of two workers marks the fleet."""
    engine = make_engine(postgres_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    try:
        _beat(sessions, "w1", connected=True, at=0)
        _beat(sessions, "w2", connected=True, at=0)
        inside = threading.Event()
        release = threading.Event()
        decisions: dict[str, list[str]] = {}

        def lose(worker: str, *, hold: bool) -> None:
            with sessions.begin() as session:
                fleet_lock(session)
                beat(session, worker_id=worker, server_id="fleet-a", connected=False, now=_at(1))
                decisions[worker] = live_connected(
                    session, now=_at(1), lease_s=LEASE_S, exclude=worker
                )
                if hold:  # keep the lock while the other worker tries to decide
                    inside.set()
                    assert release.wait(10)

        first = threading.Thread(target=lose, args=("w1",), kwargs={"hold": True})
        first.start()
        assert inside.wait(10)
        second = threading.Thread(target=lose, args=("w2",), kwargs={"hold": False})
        second.start()
        second.join(timeout=0.5)
        assert second.is_alive()  # waiting for the lock, not deciding on old rows
        release.set()
        first.join(timeout=10)
        second.join(timeout=10)
        assert decisions == {"w1": ["w2"], "w2": []}  # only w2, the last, marks
    finally:
        engine.dispose()
