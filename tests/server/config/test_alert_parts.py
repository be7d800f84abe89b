"""The alert engine reads an outlet's desired config: its ``alerts`` thresholds over the
stored rule parameters, its ``opening_hours`` (and time zone) over the outlet profile's.
Real SQLite and PostgreSQL; the engine's own evaluation with an explicit ``now``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.alerts.engine import AlertEngine
from fleet_server.config.tables import OutletConfig
from fleet_server.health.tables import Alert
from fleet_server.models import Agent, Outlet
from tests.server.config.kit import add_outlet

# Tuesday 2026-12-08 03:00 in Shanghai: every township centre is closed.
NOW = datetime(2026, 12, 7, 19, 0, tzinfo=UTC)
OFFICE = {"mon": ["08:30-17:30"], "tue": ["08:30-17:30"]}


@pytest.fixture
def sessions(db_sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """The database on SQLite and on PostgreSQL (tests/conftest.py)."""
    return db_sessions


def _offline(session: Session, outlet_id: str, *, minutes: int, desired: Any = None) -> None:
    """An outlet offline for ``minutes``, with a township profile's office hours."""
    since = NOW - timedelta(minutes=minutes)
    session.add(Outlet(id=outlet_id, created_at=since))
    session.add(Agent(outlet_id=outlet_id, state="offline", state_since=since, devices=[]))
    add_outlet(session, outlet_id, region="330106", kind="township", hours=OFFICE)
    if desired is not None:
        session.add(OutletConfig(outlet_id=outlet_id, desired_version=1, desired=desired))


def _open_alerts(sessions: sessionmaker[Session]) -> dict[str, str]:
    with sessions() as session:
        return {a.outlet_id: a.rule for a in session.scalars(select(Alert))}


def test_the_configs_hours_and_thresholds_are_what_the_rules_read(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        # Closed by its profile at 03:00: no alert, however long it is offline.
        _offline(session, "closed-by-profile", minutes=30)
        # The config says it never closes and alerts after 2 minutes.
        _offline(session, "open-by-config", minutes=5, desired={
            "opening_hours": {"always_open": True, "time_zone": "Asia/Shanghai"},
            "alerts": {"outlet_offline": {"after_s": 120}},
        })  # fmt: skip
        # Open around the clock too, but the default 600 s have not passed.
        _offline(session, "open-default-threshold", minutes=5, desired={
            "opening_hours": {"always_open": True},
        })  # fmt: skip
        # Its config's time zone puts it in office hours: 08:00 on Tuesday in Auckland.
        _offline(session, "open-in-its-zone", minutes=30, desired={
            "opening_hours": {"time_zone": "Pacific/Auckland", "tue": ["07:30-17:30"]},
        })  # fmt: skip
    AlertEngine(sessions=sessions, interval_s=60).evaluate_once(now=NOW)
    assert _open_alerts(sessions) == {
        "open-by-config": "outlet_offline",
        "open-in-its-zone": "outlet_offline",
    }


def test_a_config_signed_again_is_read_again_by_the_same_engine(
    sessions: sessionmaker[Session],
) -> None:
    """The engine re-reads an outlet's parts when its desired hash changes (ConfigParts),
    and only the profile's hours are left once the config row is gone."""
    lenient = {
        "opening_hours": {"always_open": True},
        "alerts": {"outlet_offline": {"after_s": 900}},
    }
    with sessions.begin() as session:
        _offline(session, "resigned", minutes=5, desired=lenient)
        row = session.get(OutletConfig, "resigned")
        assert row is not None
        row.desired_hash = "a" * 64
    engine = AlertEngine(sessions=sessions, interval_s=60)
    engine.evaluate_once(now=NOW)
    assert _open_alerts(sessions) == {}  # 5 minutes offline, 900 s allowed
    with sessions.begin() as session:
        row = session.get(OutletConfig, "resigned")
        assert row is not None
        row.desired = {**lenient, "alerts": {"outlet_offline": {"after_s": 120}}}
        row.desired_hash = "b" * 64
        row.desired_version = 2
    engine.evaluate_once(now=NOW)
    assert _open_alerts(sessions) == {"resigned": "outlet_offline"}
    with sessions.begin() as session:
        session.delete(session.get(OutletConfig, "resigned"))
    engine.evaluate_once(now=NOW)  # closed at 03:00 by its profile's office hours
    with sessions() as session:
        states = {a.outlet_id: a.state for a in session.scalars(select(Alert))}
    assert states == {"resigned": "resolved"}
