"""Signing and publishing desired configs: real Mosquitto, real SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from fleet_server.config.tables import OutletConfig
from govedge_testbed import Mosquitto
from govedge_wire.config import MAX_ENVELOPE_BYTES
from tests.server.config.kit import (
    ConfigWatcher,
    add_outlet,
    outlet_row,
    running_fleet,
    set_scope,
    signing_key,
    verified,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fleet.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def _ids(*names: str) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"cfg-{tag}-{name}" for name in names]


def test_a_region_change_reaches_exactly_that_regions_outlets_signed_and_retained(
    database_url: str, broker: Mosquitto, tmp_path: Path
) -> None:
    west, east, elsewhere = _ids("west", "east", "elsewhere")
    with running_fleet(database_url, broker.url, signing_key(tmp_path)) as fleet:
        with fleet.sessions.begin() as session:
            add_outlet(session, west, region="330106", kind="township_centre")
            add_outlet(session, east, region="330108", kind="kiosk")
            add_outlet(session, elsewhere, region="340102", kind="township_centre")
            set_scope(session, "region:3301", {"telemetry": {"interval_s": 60}})
            set_scope(session, f"outlet:{east}", {"telemetry": {"interval_s": 30}})
        result = fleet.reconciler.run_pass()
        assert sorted(result.signed) == sorted([west, east])
        assert sorted(result.published) == sorted([west, east])

        # Subscribed afterwards, like an agent connecting later: the retained configs.
        watcher = ConfigWatcher(broker.url, [elsewhere, west, east])
        try:
            got = {}
            for topic, payload, retained in watcher.take(2):
                assert retained
                outlet, version, config = verified(topic, payload, fleet.public_keys)
                got[outlet] = (version, config.telemetry.interval_s if config.telemetry else None)
            # The outlet override beats its region; the other region gets nothing.
            assert got == {west: (1, 60.0), east: (1, 30.0)}
            assert watcher.nothing_pending()
        finally:
            watcher.close()
        assert outlet_row(fleet.sessions, elsewhere) is None
        row = outlet_row(fleet.sessions, west)
        assert row is not None
        assert row.published_at is not None
        assert row.desired == {"telemetry": {"interval_s": 60.0}}
        assert row.drifting_since is not None  # issued, not yet reported

        # Nothing changed: a second pass signs nothing and bumps no version.
        again = fleet.reconciler.run_pass()
        assert again.signed == []
        assert outlet_row(fleet.sessions, west).desired_version == 1  # type: ignore[union-attr]
        assert fleet.stats.snapshot().published == 2


def test_versions_keep_rising_across_a_restart_and_a_crash_before_publish_is_repaired(
    broker: Mosquitto, tmp_path: Path
) -> None:
    (outlet,) = _ids("one")
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    key = signing_key(tmp_path)
    with running_fleet(url, broker.url, key) as fleet:
        with fleet.sessions.begin() as session:
            add_outlet(session, outlet, region="3301")
            set_scope(session, "global", {"log_level": "INFO"})
        assert fleet.reconciler.run_pass().published == [outlet]

    # A "crash" between commit and publish: this server never reaches the broker.
    with running_fleet(url, broker.url, key, connect=False) as fleet:
        with fleet.sessions.begin() as session:
            set_scope(session, "global", {"log_level": "DEBUG"})
        result = fleet.reconciler.run_pass()
        assert result.signed == [outlet]
        assert result.published == []
        row = outlet_row(fleet.sessions, outlet)
        assert row is not None
        assert (row.desired_version, row.published_at) == (2, None)

    # The next server's first pass publishes what was stored, without signing again.
    with running_fleet(url, broker.url, key) as fleet:
        result = fleet.reconciler.run_pass()
        assert (result.signed, result.published) == ([], [outlet])
        watcher = ConfigWatcher(broker.url, [outlet])
        try:
            ((topic, payload, _),) = watcher.take(1)
            _, version, config = verified(topic, payload, fleet.public_keys)
            assert (version, config.log_level) == (2, "DEBUG")
        finally:
            watcher.close()
        with fleet.sessions.begin() as session:
            set_scope(session, "global", {"log_level": "WARNING"})
        fleet.reconciler.run_pass()
        assert outlet_row(fleet.sessions, outlet).desired_version == 3  # type: ignore[union-attr]


def test_an_invalid_or_oversized_effective_config_is_refused_and_the_last_kept(
    broker: Mosquitto, tmp_path: Path
) -> None:
    good, big = _ids("good", "big")
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    with running_fleet(url, broker.url, signing_key(tmp_path)) as fleet:
        with fleet.sessions.begin() as session:
            add_outlet(session, good, region="3301")
            add_outlet(session, big, region="3302")
            set_scope(session, "global", {"log_level": "INFO"})
        assert sorted(fleet.reconciler.run_pass().published) == sorted([good, big])
        channels = {str(n): "x" * 32 for n in range(100)}
        with fleet.sessions.begin() as session:
            set_scope(session, "region:3301", {"log_level": "LOUD"})  # not a level
            # Far over the envelope limit once merged (many long device settings).
            huge = {f"p{n:04d}-pad": {"s": "y" * 100} for n in range(2000)}
            set_scope(
                session, "region:3302", {"devices": huge, "evaluation": {"channels": channels}}
            )
        result = fleet.reconciler.run_pass()
        assert result.refused == {good: "invalid", big: "oversize"}
        assert len(json.dumps(huge)) > MAX_ENVELOPE_BYTES
        for outlet in (good, big):
            row = outlet_row(fleet.sessions, outlet)
            assert row is not None
            assert (row.desired_version, row.desired) == (1, {"log_level": "INFO"})
        snap = fleet.stats.snapshot()
        assert snap.refused_by_server == {"invalid": 1, "oversize": 1}
        fleet.reconciler.run_pass()  # still refused: counted once while it lasts
        assert fleet.stats.snapshot().refused_by_server == {"invalid": 1, "oversize": 1}


def test_no_key_no_publishing(broker: Mosquitto, tmp_path: Path) -> None:
    from fleet_server.config.keys import ConfigKeys
    from fleet_server.config.reconcile import Reconciler

    (outlet,) = _ids("nokey")
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    with running_fleet(url, broker.url, signing_key(tmp_path)) as fleet:
        with fleet.sessions.begin() as session:
            add_outlet(session, outlet)
            set_scope(session, "global", {"log_level": "INFO"})
        keyless = Reconciler(
            sessions=fleet.sessions,
            keys=ConfigKeys(),
            publisher=fleet.ingest.publisher,
            stats=fleet.stats,
        )
        assert keyless.run_pass().signed == []
        assert fleet.stats.snapshot().signing_key is False
        with fleet.sessions() as session:
            assert session.get(OutletConfig, outlet) is None


def test_a_new_signing_key_re_signs_every_outlet_once(broker: Mosquitto, tmp_path: Path) -> None:
    from fleet_server.config.keys import public_pem, read_private_key

    (outlet,) = _ids("rotate")
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    old_key = signing_key(tmp_path)
    with running_fleet(url, broker.url, old_key) as fleet:
        with fleet.sessions.begin() as session:
            add_outlet(session, outlet)
            set_scope(session, "global", {"log_level": "INFO"})
        fleet.reconciler.run_pass()
        old_id = fleet.keys.key_id
    new_dir = tmp_path / "new"
    new_dir.mkdir()
    old_public = tmp_path / "old-public.pem"
    old_public.write_text(public_pem(read_private_key(old_key).public_key()))
    with running_fleet(url, broker.url, signing_key(new_dir), public_keys=old_public) as fleet:
        assert set(fleet.keys.public) == {fleet.keys.key_id, old_id}
        assert fleet.reconciler.run_pass().published == [outlet]
        watcher = ConfigWatcher(broker.url, [outlet])
        try:
            ((topic, payload, _),) = watcher.take(1)
            new_only = {fleet.keys.key_id: fleet.keys.public[fleet.keys.key_id]}
            _, version, config = verified(topic, payload, new_only)
            assert (version, config.log_level) == (2, "INFO")
        finally:
            watcher.close()
        assert fleet.reconciler.run_pass().signed == []


def test_a_database_restored_behind_the_agent_still_signs_above_what_the_agent_applied(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """A backup restore sets desired_version back; the agent's applied version is higher."""
    (outlet,) = _ids("restored")
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    with running_fleet(url, broker.url, signing_key(tmp_path)) as fleet:
        with fleet.sessions.begin() as session:
            add_outlet(session, outlet, region="3301")
            set_scope(session, "global", {"log_level": "INFO"})
        fleet.reconciler.run_pass()
        with fleet.sessions.begin() as session:
            row = session.get(OutletConfig, outlet)
            assert row is not None
            # As the agent reported before the restore: it runs version 7.
            row.reported_version, row.reported_hash = 7, "ab" * 32
        with fleet.sessions.begin() as session:
            set_scope(session, "global", {"log_level": "DEBUG"})
        assert fleet.reconciler.run_pass().signed == [outlet]
        row = outlet_row(fleet.sessions, outlet)
        assert row is not None
        assert row.desired_version == 8
