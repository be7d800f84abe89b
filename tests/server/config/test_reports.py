"""What agents report: in sync, refused, drifting, the drift alert, and republishing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from fleet_server.alerts.engine import AlertEngine
from fleet_server.health.tables import Alert
from govedge_testbed import Mosquitto
from govedge_wire import ConfigReport, Kind, topic_for
from tests.server.config.kit import (
    ConfigWatcher,
    Fleet,
    add_outlet,
    outlet_row,
    running_fleet,
    set_scope,
    signing_key,
    verified,
)
from tests.server.helpers import FakeAgent, mqtt_client, poll


@pytest.fixture(params=["sqlite", "postgresql"])
def fleet(request: pytest.FixtureRequest, broker: Mosquitto, tmp_path: Path) -> Iterator[Fleet]:
    url = (
        f"sqlite:///{tmp_path / 'fleet.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    with running_fleet(url, broker.url, signing_key(tmp_path)) as running:
        yield running


def _agent(broker: Mosquitto, fleet: Fleet, outlet: str) -> FakeAgent:
    with fleet.sessions.begin() as session:
        add_outlet(session, outlet, region="3301")
    return FakeAgent(broker.url, outlet, session=11)


def _report(agent: FakeAgent, **fields: object) -> None:
    seq = agent.seq
    agent.seq += 1
    agent.send(ConfigReport(outlet_id=agent.outlet_id, session=agent.session, seq=seq, **fields))


def _alerts(fleet: Fleet, outlet: str) -> list[Alert]:
    with fleet.sessions() as session:
        return list(
            session.scalars(
                select(Alert).where(
                    Alert.outlet_id == outlet, Alert.rule == "config_drift", Alert.state == "open"
                )
            )
        )


def test_applied_is_in_sync_refused_is_drifting_and_alerted(
    broker: Mosquitto, fleet: Fleet
) -> None:
    outlet = f"rep-{uuid.uuid4().hex[:8]}"
    agent = _agent(broker, fleet, outlet)
    engine = AlertEngine(sessions=fleet.sessions, interval_s=60)
    try:
        with fleet.sessions.begin() as session:
            set_scope(session, "global", {"log_level": "INFO"})
        fleet.reconciler.run_pass()
        desired = outlet_row(fleet.sessions, outlet)
        assert desired is not None
        agent.birth(config_key_ids=[fleet.keys.key_id])
        _report(agent, status="applied", config_version=1, config_hash=desired.desired_hash,
                config_key_ids=[fleet.keys.key_id])  # fmt: skip
        row = poll(
            lambda: (r := outlet_row(fleet.sessions, outlet)) and r.in_sync_since and r,
            what="in sync",
        )
        assert row.reported_version == 1
        assert row.drifting_since is None
        assert row.key_ids == [fleet.keys.key_id]
        engine.evaluate_once(now=datetime.now(UTC) + timedelta(hours=2))
        assert _alerts(fleet, outlet) == []

        with fleet.sessions.begin() as session:
            set_scope(session, "global", {"log_level": "DEBUG"})
        fleet.reconciler.run_pass()
        _report(
            agent,
            status="refused",
            config_version=1,
            config_hash=desired.desired_hash,
            offered_version=2,
            reason="unknown_key",
            detail="signed with a key this agent does not hold",
        )
        row = poll(
            lambda: (r := outlet_row(fleet.sessions, outlet)) and r.refused_reason and r,
            what="refused",
        )
        assert (row.refused_version, row.refused_reason) == (2, "unknown_key")
        assert row.in_sync_since is None
        assert row.drifting_since is not None
        assert fleet.stats.snapshot().refused_by_agents == {"unknown_key": 1}
        # A refusal opens the alert at once, whatever after_s says.
        engine.evaluate_once(now=datetime.now(UTC))
        (alert,) = _alerts(fleet, outlet)
        assert alert.detail["reason"] == "unknown_key"
    finally:
        agent.close()


def test_out_of_sync_longer_than_after_s_opens_the_drift_alert(
    broker: Mosquitto, fleet: Fleet
) -> None:
    outlet = f"rep-{uuid.uuid4().hex[:8]}"
    agent = _agent(broker, fleet, outlet)
    engine = AlertEngine(sessions=fleet.sessions, interval_s=60)
    try:
        agent.birth()  # runs no fleet config yet (config_version 3 from elsewhere)
        with fleet.sessions.begin() as session:
            set_scope(session, "global", {"log_level": "INFO"})
        fleet.reconciler.run_pass()
        poll(lambda: (r := outlet_row(fleet.sessions, outlet)) and r.reported_at, what="birth")
        now = datetime.now(UTC)
        engine.evaluate_once(now=now + timedelta(seconds=600))
        assert _alerts(fleet, outlet) == []
        engine.evaluate_once(now=now + timedelta(seconds=960))
        (alert,) = _alerts(fleet, outlet)
        assert alert.value is not None
        assert alert.value >= 900
        # Back in sync: resolved at the next evaluation.
        desired = outlet_row(fleet.sessions, outlet)
        assert desired is not None
        _report(agent, status="applied", config_version=1, config_hash=desired.desired_hash)
        poll(lambda: (r := outlet_row(fleet.sessions, outlet)) and r.in_sync_since, what="sync")
        engine.evaluate_once(now=now + timedelta(seconds=1000))
        assert _alerts(fleet, outlet) == []
    finally:
        agent.close()


def test_a_birth_behind_the_desired_version_gets_the_envelope_again(
    broker: Mosquitto, fleet: Fleet
) -> None:
    outlet = f"rep-{uuid.uuid4().hex[:8]}"
    agent = _agent(broker, fleet, outlet)
    try:
        with fleet.sessions.begin() as session:
            set_scope(session, "global", {"log_level": "ERROR"})
        assert fleet.reconciler.run_pass().published == [outlet]
        # The broker loses the retained config (cleared, as a restart without
        # persistence would): a zero-length retained payload deletes it.
        client = mqtt_client(broker.url, name="wipe")
        wiped = client.publish(topic_for(outlet, Kind.DESIRED_CONFIG), b"", qos=1, retain=True)
        wiped.wait_for_publish(timeout=10)
        client.disconnect()
        client.loop_stop()
        watcher = ConfigWatcher(broker.url, [outlet])
        try:
            assert watcher.nothing_pending()  # lost indeed
            agent.birth(config_version=None)
            # The wiped (empty) retained payload may come first; then the republished one.
            topic, payload, _ = watcher.take(1)[0]
            if not payload:
                topic, payload, _ = watcher.take(1)[0]
            _, version, config = verified(topic, payload, fleet.public_keys)
            assert (version, config.log_level) == (1, "ERROR")
            assert poll(lambda: fleet.stats.snapshot().republished, what="counted") == 1
        finally:
            watcher.close()
    finally:
        agent.close()
