"""The health recorder skips device rows whose figures repeat, and outlet health rows
whose clock skew barely moved, for one history interval.

Real SQLite through the recorder's own flush; what is checked is the stored row. The
interval is an hour (nothing can pass it during the test) or zero (every write is past
it), so no outcome depends on how fast the test runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.health.recorder import HealthRecorder
from fleet_server.health.tables import DeviceState, OutletHealth
from fleet_server.migrate import upgrade
from fleet_server.models import Outlet
from govedge_wire import Birth, Death, Telemetry

HOUR_S = 3600.0


def _recorder(
    tmp_path: Path, outlet_id: str, interval_s: float
) -> tuple[Engine, sessionmaker[Session], HealthRecorder]:
    """A migrated SQLite database with one outlet, and a recorder on it."""
    engine = make_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        session.add(Outlet(id=outlet_id, display_name=None, created_at=datetime.now(UTC)))
    recorder = HealthRecorder(history_interval_s=interval_s, retention=timedelta(hours=1))
    return engine, sessions, recorder


def _row(sessions: sessionmaker[Session], device_id: str) -> DeviceState:
    with sessions() as session:
        row: DeviceState = session.scalars(
            select(DeviceState).where(DeviceState.device_id == device_id)
        ).one()
        return row


@pytest.mark.parametrize("interval_s", [HOUR_S, 0.0])
def test_repeated_figures_skip_the_device_write_until_the_interval(
    tmp_path: Path, interval_s: float
) -> None:
    engine, sessions, recorder = _recorder(tmp_path, "rw-1", interval_s)
    seq = iter(range(100))

    def telemetry(reads_ok: int, reads_failed: int = 0) -> datetime:
        at = datetime.now(UTC)
        recorder.observe(
            Telemetry(outlet_id="rw-1", session=1, seq=next(seq),
                      devices={"reader-1": {"reads_ok": reads_ok, "reads_failed": reads_failed},
                               "pad-1": {"connected": True}}),
            received_at=at,
        )  # fmt: skip
        recorder.flush(sessions)
        return at

    try:
        recorder.observe(
            Birth(outlet_id="rw-1", session=1, seq=next(seq), agent_version="t",
                  hostname="pc", os="Debian", config_version=1, keepalive_s=30,
                  telemetry_interval_s=30.0,
                  devices=[{"device_id": "reader-1", "kind": "id_card_reader"},
                           {"device_id": "pad-1", "kind": "evaluation_pad"}]),
            received_at=datetime.now(UTC),
        )  # fmt: skip
        recorder.flush(sessions)
        first = telemetry(reads_ok=1)
        assert _row(sessions, "pad-1").last_seen == first
        assert _row(sessions, "reader-1").reads_ok == 1
        # Same figures again: inside the interval pad-1's row is not rewritten, past it
        # the repeated row is written again (last_seen catches up). reader-1 counted a
        # good read: ordinary use is no news, so it waits for the interval too.
        second = telemetry(reads_ok=2)
        assert _row(sessions, "pad-1").last_seen == (first if interval_s else second)
        reader = _row(sessions, "reader-1")
        assert (reader.reads_ok, reader.last_seen) == ((1, first) if interval_s else (2, second))
        # A failed read is news: written at once, with the good reads counted meanwhile.
        third = telemetry(reads_ok=3, reads_failed=1)
        reader = _row(sessions, "reader-1")
        assert (reader.reads_ok, reader.reads_failed, reader.error_count) == (3, 1, 1)
        assert (reader.health["reads_ok"], reader.last_seen) == (3, third)
        # Nothing changed at all: written only past the interval.
        fourth = telemetry(reads_ok=3, reads_failed=1)
        assert _row(sessions, "pad-1").last_seen == (first if interval_s else fourth)
        assert _row(sessions, "reader-1").last_seen == (third if interval_s else fourth)
    finally:
        engine.dispose()


def _health(sessions: sessionmaker[Session]) -> OutletHealth:
    with sessions() as session:
        row: OutletHealth = session.scalars(select(OutletHealth)).one()
        return row


@pytest.mark.parametrize("interval_s", [HOUR_S, 0.0])
def test_outlet_health_is_written_when_skew_or_flaps_change_or_the_interval_passed(
    tmp_path: Path, interval_s: float
) -> None:
    engine, sessions, recorder = _recorder(tmp_path, "rw-2", interval_s)
    seq = iter(range(100))

    def telemetry(skew_s: float) -> datetime:
        # The outlet's clock runs ``skew_s`` behind the server's receive time.
        at = datetime.now(UTC)
        ts = round((at.timestamp() - skew_s) * 1000)
        recorder.observe(
            Telemetry(outlet_id="rw-2", session=1, seq=next(seq), ts=ts), received_at=at
        )
        recorder.flush(sessions)
        return at

    try:
        first = telemetry(skew_s=5.0)
        assert (_health(sessions).clock_skew_s, _health(sessions).last_telemetry_at) == (
            5.0,
            first,
        )
        # The skew moved by 0.2 s: inside the interval the row keeps the first write.
        second = telemetry(skew_s=5.2)
        stored = _health(sessions)
        if interval_s:
            assert (stored.clock_skew_s, stored.last_telemetry_at) == (5.0, first)
        else:
            assert (stored.clock_skew_s, stored.last_telemetry_at) == (5.2, second)
        # A skew of minutes (what the clock-skew rule looks for) is written at once.
        third = telemetry(skew_s=300.0)
        assert (_health(sessions).clock_skew_s, _health(sessions).last_telemetry_at) == (
            300.0,
            third,
        )
        # A death counts a flap: written at once, with the latest telemetry time.
        recorder.observe(
            Death(outlet_id="rw-2", session=1, seq=next(seq), reason="will"), received_at=third
        )
        recorder.flush(sessions)
        assert _health(sessions).flaps == 1
    finally:
        engine.dispose()
