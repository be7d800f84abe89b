"""The presence state machine on its own: no broker, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleet_server.ingest.presence import OutletRecord, PresenceTracker
from govedge_wire import Birth, CommandResult, Death, Event, Telemetry, Transaction

OUTLET = "township-dinghai-01"
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _birth(session: int, seq: int = 0) -> Birth:
    return Birth(
        outlet_id=OUTLET,
        session=session,
        seq=seq,
        agent_version="1.2.3",
        hostname="pc-1",
        os="Debian 12",
        config_version=7,
        telemetry_interval_s=5,
        keepalive_s=30,
    )


def _telemetry(session: int, seq: int) -> Telemetry:
    return Telemetry(outlet_id=OUTLET, session=session, seq=seq, metrics={"cpu_percent": 3.5})


def _death(session: int) -> Death:
    return Death(outlet_id=OUTLET, session=session, seq=0, reason="will")


@pytest.fixture
def tracker() -> PresenceTracker:
    return PresenceTracker(rebirth_interval_s=10)


def test_birth_makes_outlet_online(tracker: PresenceTracker) -> None:
    outcome = tracker.apply(_birth(5, seq=3), received_at=_at(1), now=1)
    record = tracker.get(OUTLET)
    assert outcome.ignored is None
    assert not outcome.rebirth
    assert record is not None
    assert record.state == "online"
    assert (record.session, record.last_seq) == (5, 3)
    assert record.state_since == record.last_seen == record.birth_at == _at(1)
    assert (record.agent_version, record.hostname, record.config_version) == ("1.2.3", "pc-1", 7)
    assert [r.outlet_id for r in tracker.dirty()] == [OUTLET]


def test_death_of_current_session_makes_outlet_offline_at_receive_time(
    tracker: PresenceTracker,
) -> None:
    tracker.apply(_birth(5), received_at=_at(1), now=1)
    outcome = tracker.apply(_death(5), received_at=_at(9), now=9)
    record = tracker.get(OUTLET)
    assert outcome.ignored is None
    assert record is not None
    assert record.state == "offline"
    assert record.state_since == _at(9)
    # A duplicate will of the same session changes nothing, not even the time.
    tracker.apply(_death(5), received_at=_at(20), now=20)
    assert tracker.get(OUTLET).state_since == _at(9)  # type: ignore[union-attr]


def test_late_will_of_old_session_is_ignored(tracker: PresenceTracker) -> None:
    tracker.apply(_birth(4), received_at=_at(1), now=1)
    tracker.apply(_birth(5), received_at=_at(2), now=2)
    outcome = tracker.apply(_death(4), received_at=_at(3), now=3)
    assert outcome.ignored == "late_will"
    assert tracker.get(OUTLET).state == "online"  # type: ignore[union-attr]


def test_stale_birth_replay_is_ignored(tracker: PresenceTracker) -> None:
    tracker.apply(_birth(5), received_at=_at(1), now=1)
    tracker.apply(_death(5), received_at=_at(2), now=2)
    outcome = tracker.apply(_birth(4), received_at=_at(3), now=3)
    record = tracker.get(OUTLET)
    assert outcome.ignored == "stale_session"
    assert record is not None
    assert (record.state, record.session) == ("offline", 5)


def test_stale_birth_asks_the_agent_to_move_past_the_known_session(
    tracker: PresenceTracker,
) -> None:
    # A reinstalled agent (session file gone) starts again at 0.
    tracker.apply(_birth(5), received_at=_at(1), now=1)
    tracker.apply(_death(5), received_at=_at(2), now=2)
    outcome = tracker.apply(_birth(0), received_at=_at(3), now=3)
    assert (outcome.ignored, outcome.rebirth, outcome.known_session) == ("stale_session", True, 5)
    # It reconnects above the known session: accepted like any reconnect.
    assert tracker.apply(_birth(6), received_at=_at(4), now=4).ignored is None
    assert tracker.get(OUTLET).state == "online"  # type: ignore[union-attr]
    # Messages of the truly old sessions stay refused.
    old = tracker.apply(_telemetry(5, 1), received_at=_at(5), now=30)
    assert (old.ignored, old.known_session) == ("session_mismatch", 6)
    assert tracker.apply(_birth(5), received_at=_at(6), now=60).ignored == "stale_session"
    assert tracker.get(OUTLET).session == 6  # type: ignore[union-attr]


def test_only_an_older_session_carries_the_known_session(tracker: PresenceTracker) -> None:
    tracker.apply(_birth(5), received_at=_at(1), now=1)
    older = tracker.apply(_telemetry(2, 1), received_at=_at(2), now=2)
    newer = tracker.apply(_telemetry(7, 1), received_at=_at(3), now=20)
    assert (older.ignored, older.known_session) == ("session_mismatch", 5)
    # A newer session: the server missed its birth; a plain rebirth brings it.
    assert (newer.ignored, newer.rebirth, newer.known_session) == ("session_mismatch", True, None)


def test_rebirth_in_same_session_is_accepted(tracker: PresenceTracker) -> None:
    tracker.apply(_birth(5, seq=0), received_at=_at(1), now=1)
    outcome = tracker.apply(_birth(5, seq=9), received_at=_at(2), now=2)
    assert outcome.ignored is None
    assert tracker.get(OUTLET).last_seq == 9  # type: ignore[union-attr]


def test_in_order_data_updates_last_seen_seq_and_metrics(tracker: PresenceTracker) -> None:
    tracker.apply(_birth(5, seq=0), received_at=_at(1), now=1)
    outcome = tracker.apply(_telemetry(5, 1), received_at=_at(2), now=2)
    event = Event(outlet_id=OUTLET, session=5, seq=2, name="paper_out")
    result = CommandResult(outlet_id=OUTLET, session=5, seq=3, cmd_id="c1", status="ok")
    assert tracker.apply(event, received_at=_at(3), now=3).notes == ()
    assert tracker.apply(result, received_at=_at(4), now=4).notes == ()
    record = tracker.get(OUTLET)
    assert outcome == type(outcome)()
    assert record is not None
    assert (record.last_seq, record.last_seen) == (3, _at(4))
    assert record.last_metrics == {"cpu_percent": 3.5}
    assert record.state_since == _at(1)


def test_seq_gap_requests_a_rebirth_throttled(tracker: PresenceTracker) -> None:
    tracker.apply(_birth(5, seq=0), received_at=_at(1), now=1)
    outcome = tracker.apply(_telemetry(5, 3), received_at=_at(2), now=2)
    assert outcome.ignored is None
    assert outcome.notes == ("seq_gap",)
    assert (outcome.rebirth, outcome.rebirth_reason) == (True, "seq_gap")
    assert tracker.get(OUTLET).last_seq == 3  # type: ignore[union-attr]
    # Another gap within 10 s: counted, but no second request yet.
    again = tracker.apply(_telemetry(5, 7), received_at=_at(3), now=5)
    assert (again.rebirth, again.rebirth_reason) == (False, "seq_gap")
    later = tracker.apply(_telemetry(5, 9), received_at=_at(13), now=12.5)
    assert later.rebirth
    # An old, duplicate seq does not lower last_seq.
    tracker.apply(_telemetry(5, 2), received_at=_at(14), now=30)
    assert tracker.get(OUTLET).last_seq == 9  # type: ignore[union-attr]


def test_data_before_birth_requests_a_rebirth(tracker: PresenceTracker) -> None:
    outcome = tracker.apply(_telemetry(5, 1), received_at=_at(1), now=1)
    assert outcome.ignored == "no_birth"
    assert outcome.rebirth
    assert tracker.get(OUTLET) is None
    assert tracker.dirty() == []


def test_data_of_another_session_requests_a_rebirth(tracker: PresenceTracker) -> None:
    tracker.apply(_birth(5), received_at=_at(1), now=1)
    outcome = tracker.apply(_telemetry(6, 1), received_at=_at(2), now=2)
    assert (outcome.ignored, outcome.rebirth) == ("session_mismatch", True)
    assert tracker.get(OUTLET).last_seen == _at(1)  # type: ignore[union-attr]


def test_data_after_death_does_not_revive(tracker: PresenceTracker) -> None:
    tracker.apply(_birth(5), received_at=_at(1), now=1)
    tracker.apply(_death(5), received_at=_at(2), now=2)
    outcome = tracker.apply(_telemetry(5, 1), received_at=_at(3), now=3)
    assert outcome.ignored == "after_death"
    assert tracker.get(OUTLET).state == "offline"  # type: ignore[union-attr]


def test_death_before_birth_is_ignored(tracker: PresenceTracker) -> None:
    assert tracker.apply(_death(1), received_at=_at(1), now=1).ignored == "no_birth"


def test_broker_loss_makes_online_stale_and_hearing_again_online(
    tracker: PresenceTracker,
) -> None:
    tracker.apply(_birth(5, seq=0), received_at=_at(1), now=1)
    other = _birth(1).model_copy(update={"outlet_id": "kiosk-24h-01"})
    tracker.apply(other, received_at=_at(1), now=1)
    tracker.apply(
        Death(outlet_id="kiosk-24h-01", session=1, seq=0, reason="will"), received_at=_at(2), now=2
    )
    assert tracker.mark_all_stale(at=_at(5)) == 1
    record = tracker.get(OUTLET)
    assert record is not None
    assert (record.state, record.state_since) == ("stale", _at(5))
    assert tracker.get("kiosk-24h-01").state == "offline"  # type: ignore[union-attr]
    outcome = tracker.apply(_telemetry(5, 1), received_at=_at(8), now=8)
    record = tracker.get(OUTLET)
    assert outcome.ignored is None
    assert record is not None
    assert (record.state, record.state_since) == ("online", _at(8))


def test_transactions_are_counted_not_acked(tracker: PresenceTracker) -> None:
    tracker.apply(_birth(5, seq=0), received_at=_at(1), now=1)
    tx = Transaction(
        outlet_id=OUTLET, session=5, seq=1, tx_id="tx-00000001", tx_kind="evaluation",
        created_ts=1, body={"rating": 5},
    )  # fmt: skip
    assert tracker.apply(tx, received_at=_at(2), now=2).notes == ("transactions_received",)


def test_mark_stored_clears_dirty(tracker: PresenceTracker) -> None:
    tracker.apply(_birth(5), received_at=_at(1), now=1)
    tracker.mark_stored([OUTLET])
    assert tracker.dirty() == []
    assert tracker.get(OUTLET).stored  # type: ignore[union-attr]


# -- shared mode: several workers, the database is the source of truth -----------------


@pytest.fixture
def shared() -> PresenceTracker:
    return PresenceTracker(rebirth_interval_s=10, shared=True)


def _stored(session: int, state: str, *, last_seq: int = 0, seen: float = 0) -> OutletRecord:
    """An outlet's row as another worker wrote it."""
    return OutletRecord(
        outlet_id=OUTLET, state=state, state_since=_at(seen), session=session,  # type: ignore[arg-type]
        last_seq=last_seq, last_seen=_at(seen), birth_at=_at(0), agent_version="1.2.3",
        last_metrics={"cpu_percent": 1.0},
    )  # fmt: skip


def test_shared_unknown_or_newer_session_needs_the_database(
    shared: PresenceTracker, tracker: PresenceTracker
) -> None:
    assert shared.needs_refresh(_telemetry(5, 1))  # never heard of
    assert shared.needs_refresh(_death(5))
    assert not shared.needs_refresh(_birth(5))
    shared.apply(_birth(5), received_at=_at(1), now=1)
    assert not shared.needs_refresh(_telemetry(5, 1))
    assert not shared.needs_refresh(_telemetry(4, 1))  # older: refused as usual
    assert shared.needs_refresh(_telemetry(6, 1))  # the new birth went elsewhere
    assert not tracker.needs_refresh(_telemetry(5, 1))  # single worker: never


def test_shared_adopts_a_birth_another_worker_stored(shared: PresenceTracker) -> None:
    shared.apply(_birth(5), received_at=_at(1), now=1)
    shared.mark_stored([OUTLET])
    assert shared.adopt(_stored(6, "online", last_seq=0, seen=2))
    assert not shared.adopt(_stored(6, "online"))  # not newer than what we have now
    assert shared.dirty() == []
    outcome = shared.apply(_telemetry(6, 3), received_at=_at(3), now=3)
    assert outcome.ignored is None
    record = shared.get(OUTLET)
    assert record is not None
    assert (record.state, record.session, record.last_seq) == ("online", 6, 3)


def test_shared_seq_gaps_are_not_judged(shared: PresenceTracker) -> None:
    shared.apply(_birth(5), received_at=_at(1), now=1)
    for seq in (2, 5, 9):  # the other worker got 1, 3, 4, 6, 7, 8
        outcome = shared.apply(_telemetry(5, seq), received_at=_at(seq), now=seq)
        assert outcome == type(outcome)()  # accepted, nothing noted, no rebirth
    record = shared.get(OUTLET)
    assert record is not None
    assert record.last_seq == 9


def test_shared_stored_death_wins_over_this_workers_online(shared: PresenceTracker) -> None:
    shared.apply(_birth(5), received_at=_at(1), now=1)
    shared.mark_stored([OUTLET])
    # Telemetry in flight here while another worker stored the will of the session.
    shared.apply(_telemetry(5, 4), received_at=_at(4), now=4)
    shared.reconcile([_stored(5, "offline", last_seq=3, seen=5)])
    [record] = shared.dirty()
    assert (record.state, record.state_since) == ("offline", _at(5))
    assert (record.last_seq, record.last_seen) == (4, _at(5))
    # And losing the broker afterwards does not make it stale either.
    # This worker now knows the death too: losing the broker changes nothing of it.
    shared.mark_stored([OUTLET])
    assert shared.mark_all_stale(at=_at(6)) == 0
    assert shared.dirty() == []


def test_shared_broker_loss_cannot_resurrect_a_death_stored_elsewhere(
    shared: PresenceTracker,
) -> None:
    shared.apply(_birth(5), received_at=_at(1), now=1)
    shared.mark_stored([OUTLET])
    assert shared.mark_all_stale(at=_at(9)) == 1  # this worker never saw the will
    shared.reconcile([_stored(5, "offline", seen=5)])
    [record] = shared.dirty()
    assert (record.state, record.state_since) == ("offline", _at(5))


def test_shared_newer_stored_session_drops_what_this_worker_would_write(
    shared: PresenceTracker,
) -> None:
    shared.apply(_birth(5), received_at=_at(1), now=1)
    shared.reconcile([_stored(6, "online", seen=2)])
    assert shared.dirty() == []
    record = shared.get(OUTLET)
    assert record is not None
    assert record.session == 6


def test_shared_our_newer_session_wins_over_the_stored_row(shared: PresenceTracker) -> None:
    shared.apply(_birth(7), received_at=_at(3), now=3)
    shared.reconcile([_stored(6, "offline", seen=2)])
    [record] = shared.dirty()
    assert (record.state, record.session) == ("online", 7)


def test_shared_fleet_marked_in_the_database_changes_memory_only(
    shared: PresenceTracker,
) -> None:
    shared.apply(_birth(5), received_at=_at(1), now=1)
    shared.mark_stored([OUTLET])
    other = _birth(2).model_copy(update={"outlet_id": "kiosk-24h-01"})
    shared.apply(other, received_at=_at(2), now=2)  # dirty, not yet written
    assert shared.mark_all_stale(at=_at(5), dirty=False) == 2
    assert shared.dirty_ids() == ["kiosk-24h-01"]  # still to write, now as stale
    for outlet_id in (OUTLET, "kiosk-24h-01"):
        record = shared.get(outlet_id)
        assert record is not None
        assert (record.state, record.state_since) == ("stale", _at(5))
    shared.apply(_telemetry(5, 1), received_at=_at(8), now=8)
    assert shared.get(OUTLET).state == "online"  # type: ignore[union-attr]
    assert OUTLET in shared.dirty_ids()
