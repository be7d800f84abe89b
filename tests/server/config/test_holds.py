"""Changes saved ``closed_hours_only`` wait for closed hours (or the quiet window)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from govedge_testbed import Mosquitto
from tests.server.config.kit import (
    ConfigWatcher,
    add_outlet,
    outlet_row,
    running_fleet,
    set_scope,
    signing_key,
    verified,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
WEEKDAYS = {day: ["08:00-18:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def _local(hh: int, mm: int = 0) -> datetime:
    """Monday 2026-12-07 at ``hh:mm`` in Shanghai, as UTC."""
    return datetime(2026, 12, 7, hh, mm, tzinfo=SHANGHAI).astimezone(UTC)


def test_a_closed_hours_change_is_held_while_open_and_published_once_closed(
    broker: Mosquitto, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    office, kiosk, unknown = (f"hold-{tag}-{n}" for n in ("office", "kiosk", "unknown"))
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    with running_fleet(url, broker.url, signing_key(tmp_path)) as fleet:
        with fleet.sessions.begin() as session:
            add_outlet(session, office, region="3301", hours=WEEKDAYS)
            add_outlet(session, kiosk, region="3302", hours=WEEKDAYS)
            add_outlet(session, unknown, region="3303")
            set_scope(session, "global", {"log_level": "INFO"}, at=_local(7))
            # The kiosk's own config says it never closes, with a quiet window at night.
            hours = {"always_open": True, "quiet_window": "23:00-05:00"}
            set_scope(session, "region:3302", {"opening_hours": hours}, at=_local(7))
        assert len(fleet.reconciler.run_pass(now=_local(7, 5)).published) == 3

        with fleet.sessions.begin() as session:
            set_scope(session, "global", {"log_level": "DEBUG"}, closed_hours_only=True,
                      at=_local(10))  # fmt: skip
        during = fleet.reconciler.run_pass(now=_local(10, 1))
        assert sorted(during.held) == sorted([office, kiosk, unknown])
        assert during.signed == during.published == []
        row = outlet_row(fleet.sessions, office)
        assert row is not None
        assert row.desired_version == 1
        assert row.held is not None
        assert row.held["config"] == {"log_level": "DEBUG"}
        assert row.held["not_before"] == _local(18).isoformat()
        assert "global" in row.held["reason"]
        kiosk_row = outlet_row(fleet.sessions, kiosk)
        assert kiosk_row is not None
        assert kiosk_row.held is not None
        assert kiosk_row.held["not_before"] == _local(23).isoformat()
        unknown_row = outlet_row(fleet.sessions, unknown)
        assert unknown_row is not None
        assert unknown_row.held is not None
        assert unknown_row.held["not_before"] is None
        assert "no quiet_window" in unknown_row.held["reason"]

        # Another change meanwhile (not closed-hours) keeps the earlier one held with it.
        with fleet.sessions.begin() as session:
            set_scope(session, "region:3301", {"telemetry": {"interval_s": 20}}, at=_local(11))
        assert office in fleet.reconciler.run_pass(now=_local(11, 1)).held

        closed = fleet.reconciler.run_pass(now=_local(18, 30))
        assert closed.published == [office]
        watcher = ConfigWatcher(broker.url, [office])
        try:
            ((topic, payload, _),) = watcher.take(1)
            _, version, config = verified(topic, payload, fleet.public_keys)
            assert version == 2
            assert config.log_level == "DEBUG"
            assert config.telemetry is not None
            assert config.telemetry.interval_s == 20.0
        finally:
            watcher.close()
        row = outlet_row(fleet.sessions, office)
        assert row is not None
        assert row.held is None

        night = fleet.reconciler.run_pass(now=_local(23, 30))
        assert night.published == [kiosk]
        assert unknown in night.held
        assert outlet_row(fleet.sessions, unknown).desired_version == 1  # type: ignore[union-attr]

        # Taking the change back releases what was held: nothing to publish.
        with fleet.sessions.begin() as session:
            set_scope(session, "global", {"log_level": "INFO"}, at=_local(23, 40))
        back = fleet.reconciler.run_pass(now=_local(23, 41))
        assert unknown not in back.held
        row = outlet_row(fleet.sessions, unknown)
        assert row is not None
        assert (row.desired_version, row.held) == (1, None)
        assert fleet.stats.snapshot().held == 0


def test_a_hold_survives_a_restart(broker: Mosquitto, tmp_path: Path) -> None:
    # The hold is decided again each pass from the stored versions, not from memory.
    outlet = f"hold-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    key = signing_key(tmp_path)
    with running_fleet(url, broker.url, key) as fleet:
        with fleet.sessions.begin() as session:
            add_outlet(session, outlet, hours=WEEKDAYS)
            set_scope(session, "global", {"log_level": "INFO"}, closed_hours_only=True,
                      at=_local(9))  # fmt: skip
        # Never had a config: the first one waits too.
        assert fleet.reconciler.run_pass(now=_local(9, 1)).held == [outlet]
    with running_fleet(url, broker.url, key) as fleet:
        assert fleet.reconciler.run_pass(now=_local(12)).held == [outlet]
        later = _local(9) + timedelta(days=1, hours=10)  # Tuesday 19:00
        assert fleet.reconciler.run_pass(now=later).published == [outlet]
