"""What the agents row holds after each message, written through the ingest's own
presence store into a real SQLite database: a message that repeats an outlet's metrics
writes only its last_seq/last_seen, and every real change still reaches the row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.ingest.presence import PresenceTracker, UplinkMessage
from fleet_server.ingest.presence_store import PresenceStore
from fleet_server.ingest.stats import IngestStats
from fleet_server.migrate import upgrade
from fleet_server.models import Agent
from govedge_wire import Birth, Death, Telemetry

OUTLET = "township-dinghai-01"
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


class _Fleet:
    """A migrated database, a tracker and its store; ``send`` applies and flushes one."""

    def __init__(self, tmp_path: Path) -> None:
        self.engine: Engine = make_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
        upgrade(self.engine)
        self.sessions: sessionmaker[Session] = make_sessionmaker(self.engine)
        self.tracker = PresenceTracker(rebirth_interval_s=10)
        self.store = PresenceStore(
            sessions=self.sessions, stats=IngestStats(), tracker=self.tracker
        )

    def send(self, message: UplinkMessage, at_s: float) -> None:
        outcome = self.tracker.apply(message, received_at=_at(at_s), now=at_s)
        assert outcome.ignored is None
        self.store.flush()

    def row(self) -> Agent:
        with self.sessions() as session:
            row: Agent = session.scalars(select(Agent).where(Agent.outlet_id == OUTLET)).one()
            return row


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _telemetry(seq: int, **metrics: Any) -> Telemetry:
    return Telemetry(outlet_id=OUTLET, session=5, seq=seq, metrics=metrics)


@pytest.fixture
def fleet(tmp_path: Path) -> Any:
    fleet = _Fleet(tmp_path)
    fleet.send(
        Birth(outlet_id=OUTLET, session=5, seq=0, agent_version="1.2.3", hostname="pc-1",
              os="Debian 12", config_version=7, telemetry_interval_s=5, keepalive_s=30),
        at_s=0,
    )  # fmt: skip
    yield fleet
    fleet.engine.dispose()


def test_repeated_metrics_still_move_seq_and_last_seen(fleet: _Fleet) -> None:
    fleet.send(_telemetry(1, cpu_percent=3.5, disk_percent=40), at_s=1)
    fleet.send(_telemetry(2, cpu_percent=3.5, disk_percent=40), at_s=2)
    row = fleet.row()
    assert (row.last_seq, row.last_seen, row.state) == (2, _at(2), "online")
    assert row.last_metrics == {"cpu_percent": 3.5, "disk_percent": 40}
    assert (row.state_since, row.agent_version) == (_at(0), "1.2.3")


def test_changed_metrics_are_written_types_included(fleet: _Fleet) -> None:
    fleet.send(_telemetry(1, cpu_percent=3.5, flag=1), at_s=1)
    fleet.send(_telemetry(2, cpu_percent=97.0, flag=1), at_s=2)
    assert fleet.row().last_metrics == {"cpu_percent": 97.0, "flag": 1}
    # True == 1 in Python; the stored JSON must still say true.
    fleet.send(_telemetry(3, cpu_percent=97.0, flag=True), at_s=3)
    row = fleet.row()
    assert row.last_metrics == {"cpu_percent": 97.0, "flag": True}
    assert row.last_metrics is not None
    assert row.last_metrics["flag"] is True
    assert row.last_seq == 3


def test_state_changes_are_written_after_repeats(fleet: _Fleet) -> None:
    fleet.send(_telemetry(1, cpu_percent=3.5), at_s=1)
    fleet.tracker.mark_all_stale(at=_at(2))
    fleet.store.flush()
    assert (fleet.row().state, fleet.row().state_since) == ("stale", _at(2))
    fleet.send(_telemetry(2, cpu_percent=3.5), at_s=3)
    row = fleet.row()
    assert (row.state, row.state_since, row.last_seq) == ("online", _at(3), 2)
    fleet.send(Death(outlet_id=OUTLET, session=5, seq=0, reason="will"), at_s=4)
    row = fleet.row()
    assert (row.state, row.state_since, row.last_seq) == ("offline", _at(4), 2)
