"""A delivery round claims its rows in one go (``routing.store.claim``).

Two server processes running rounds over the same inbox must never both hold a row;
a row already leased, delivered or dead is not taken; an expired lease is. Real SQLite
and PostgreSQL; two threads with sessions of their own stand for the two processes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from fleet_server.models import InboxEntry
from fleet_server.routing import store
from fleet_server.routing.targets import load_targets
from fleet_server.routing.worker import DeliveryWorker
from govedge_testbed.upstream import Upstream, write_targets


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    fake = Upstream()
    fake.start()
    yield fake
    fake.stop()


def _row(n: int, **values: Any) -> InboxEntry:
    # Taken per row, not at import: a module collected half an hour before it runs (CI)
    # would find its "held for 5 minutes" leases long run out.
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "tx_id": f"tx-{n}", "outlet_id": "o-1", "idempotency_key": f"o-1:tx-{n}",
        "tx_kind": "evaluation", "sealed_body": {}, "created_ts": 0, "received_at": now,
        "state": "pending", "attempts": 0, "next_due_at": now,
    } | values  # fmt: skip
    return InboxEntry(**fields)


def test_a_round_takes_only_free_pending_rows(db_sessions: Any) -> None:
    now = datetime.now(UTC)
    with db_sessions.begin() as session:
        session.add_all(
            [
                _row(1),
                _row(2),
                _row(3, lease_until=now + timedelta(minutes=5)),  # held by someone
                _row(4, lease_until=now - timedelta(minutes=5)),  # their lease ran out
                _row(5, state="delivered"),
                _row(6, state="dead"),
            ]
        )
    with db_sessions() as session:
        ids = {row.tx_id: row.id for row in session.scalars(select(InboxEntry))}
        lease = now + timedelta(seconds=30)
        taken = store.claim(
            session,
            {ids["tx-1"]: "a", ids["tx-2"]: "b", ids["tx-3"]: "a", ids["tx-4"]: "b",
             ids["tx-5"]: "a", ids["tx-6"]: "b"},
            lease_until=lease,
        )  # fmt: skip
    assert taken == {ids["tx-1"], ids["tx-2"], ids["tx-4"]}
    with db_sessions() as session:
        rows = {row.tx_id: row for row in session.scalars(select(InboxEntry))}
    assert (rows["tx-1"].target, rows["tx-2"].target, rows["tx-4"].target) == ("a", "b", "b")
    assert rows["tx-1"].lease_until == lease
    assert rows["tx-3"].target is None  # untouched
    # Claimed again at once (another process's round): nothing left to take.
    with db_sessions() as session:
        assert store.claim(session, dict.fromkeys(ids.values(), "a"), lease_until=lease) == set()


def test_two_processes_claiming_the_same_rows_never_share_one(db_sessions: Any) -> None:
    with db_sessions.begin() as session:
        session.add_all([_row(n) for n in range(200)])
    with db_sessions() as session:
        ids = [row.id for row in session.scalars(select(InboxEntry))]
    won: list[set[int]] = [set(), set()]
    start = threading.Barrier(2)

    def round_robin(me: int) -> None:
        start.wait()
        # Overlapping rounds of 20 rows each, in opposite orders.
        order = ids if me == 0 else list(reversed(ids))
        for first in range(0, len(order), 20):
            with db_sessions() as session:
                won[me] |= store.claim(
                    session,
                    dict.fromkeys(order[first : first + 20], "t"),
                    lease_until=datetime.now(UTC) + timedelta(seconds=30),
                )

    threads = [threading.Thread(target=round_robin, args=(me,)) for me in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not won[0] & won[1]
    assert won[0] | won[1] == set(ids)


# A real database error in the claim: a trigger refuses to set a lease.
_REFUSE = {
    "sqlite": [
        "CREATE TRIGGER refuse_claims BEFORE UPDATE OF lease_until ON inbox "
        "WHEN NEW.lease_until IS NOT NULL BEGIN SELECT RAISE(ABORT, 'claims refused'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_claims() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'claims refused'; END $$",
        "CREATE TRIGGER refuse_claims BEFORE UPDATE OF lease_until ON inbox "
        "FOR EACH ROW WHEN (NEW.lease_until IS NOT NULL) EXECUTE FUNCTION refuse_claims()",
    ],
}
_ALLOW = {
    "sqlite": ["DROP TRIGGER refuse_claims"],
    "postgresql": ["DROP TRIGGER refuse_claims ON inbox", "DROP FUNCTION refuse_claims()"],
}


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not check():
        assert time.monotonic() < deadline, f"not within 20 s: {what}"
        time.sleep(0.05)


def test_a_round_failing_on_the_database_leaves_the_breaker_probe_free(
    db_sessions: Any, upstream: Upstream, tmp_path: Path
) -> None:
    """A half-open breaker lets one probe through; a round that took it and then failed
    on the database must give it back, or the target is never tried again."""
    targets = load_targets(
        write_targets(
            tmp_path / "targets.json", upstream, ["hcp"],
            hcp={"breaker_threshold": 1, "breaker_cooldown_s": 0.1},
        )
    )  # fmt: skip
    dialect = db_sessions.kw["bind"].dialect.name
    with db_sessions.begin() as session:
        session.add(_row(1, body={"rating": 5}))
        for statement in _REFUSE[dialect]:
            session.execute(text(statement))
    worker = DeliveryWorker(
        sessions=db_sessions, targets=targets, publish_results=lambda rs: [True] * len(rs),
        poll_interval_s=0.05, concurrency=2, lease_s=30, seed=1,
    )  # fmt: skip
    breaker = worker.breakers["hcp"]
    breaker.failure()  # opened by an earlier failure: after 0.1 s one probe may go
    _until(lambda: breaker.state == "half_open", "the breaker half-open")
    worker.start()
    try:
        _until(lambda: worker.counters["db_error"] >= 1, "a round failing on the claim")
        with db_sessions.begin() as session:
            for statement in _ALLOW[dialect]:
                session.execute(text(statement))

        def delivered() -> bool:
            with db_sessions() as session:
                return session.scalars(select(InboxEntry.state)).one() == "delivered"

        _until(delivered, "the row delivered once the database takes claims again")
    finally:
        worker.stop()
    assert breaker.state == "closed"
    assert upstream.accepted_count["o-1:tx-1"] == 1
    assert upstream.by_target.get("hcp") == ["o-1:tx-1"]


# A real database error in the outcome's commit: a trigger refuses the attempt's row.
_REFUSE_OUTCOMES = {
    "sqlite": [
        "CREATE TRIGGER refuse_outcomes BEFORE INSERT ON delivery_attempts "
        "BEGIN SELECT RAISE(ABORT, 'outcomes refused'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_outcomes() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'outcomes refused'; END $$",
        "CREATE TRIGGER refuse_outcomes BEFORE INSERT ON delivery_attempts "
        "FOR EACH ROW EXECUTE FUNCTION refuse_outcomes()",
    ],
}
_ALLOW_OUTCOMES = {
    "sqlite": ["DROP TRIGGER refuse_outcomes"],
    "postgresql": [
        "DROP TRIGGER refuse_outcomes ON delivery_attempts",
        "DROP FUNCTION refuse_outcomes()",
    ],
}


def _state_and_case(db_sessions: Any) -> tuple[str, str | None]:
    with db_sessions() as session:
        row = session.execute(select(InboxEntry.state, InboxEntry.case_number)).one()
        return str(row.state), row.case_number


def _refusing_worker(
    db_sessions: Any, upstream: Upstream, tmp_path: Path, *, poll_s: float, lease_s: float
) -> DeliveryWorker:
    targets = load_targets(write_targets(tmp_path / "targets.json", upstream, ["hcp"]))
    with db_sessions.begin() as session:
        session.add(_row(1, body={"rating": 5}))
        for statement in _REFUSE_OUTCOMES[db_sessions.kw["bind"].dialect.name]:
            session.execute(text(statement))
    return DeliveryWorker(
        sessions=db_sessions, targets=targets, publish_results=lambda rs: [True] * len(rs),
        poll_interval_s=poll_s, concurrency=2, lease_s=lease_s, seed=1,
    )  # fmt: skip


def _allow_outcomes(db_sessions: Any) -> None:
    with db_sessions.begin() as session:
        for statement in _ALLOW_OUTCOMES[db_sessions.kw["bind"].dialect.name]:
            session.execute(text(statement))


def test_an_outcome_the_database_refused_once_is_committed_later_without_a_second_delivery(
    db_sessions: Any, upstream: Upstream, tmp_path: Path
) -> None:
    """The upstream took the row; its outcome's commit failed. The outcome is kept for
    the next rounds, so the row ends delivered with its case number, sent once."""
    worker = _refusing_worker(db_sessions, upstream, tmp_path, poll_s=2.0, lease_s=60)
    worker.start()
    try:
        _until(lambda: worker.counters["db_error"] >= 1, "the outcome's commit refused")
        _allow_outcomes(db_sessions)  # before the next try, a poll interval later
        _until(lambda: _state_and_case(db_sessions)[0] == "delivered", "the row delivered")
    finally:
        worker.stop()
    assert _state_and_case(db_sessions)[1] == upstream.accepted["o-1:tx-1"]["case_number"]
    assert upstream.received["o-1:tx-1"] == 1  # no second delivery
    assert worker.counters["delivered"] == 1


def test_an_outcome_the_database_keeps_refusing_is_let_go_and_the_row_delivered_again(
    db_sessions: Any, upstream: Upstream, tmp_path: Path
) -> None:
    """After its tries the outcome is dropped; the lease runs out and the row goes again
    under the same Idempotency-Key: the target answers duplicate with the first case."""
    worker = _refusing_worker(db_sessions, upstream, tmp_path, poll_s=0.05, lease_s=3)
    worker.start()
    try:
        _until(lambda: worker.counters["db_error"] >= 3, "the outcome refused three times")
        assert _state_and_case(db_sessions)[0] == "pending"
        _allow_outcomes(db_sessions)
        _until(lambda: _state_and_case(db_sessions)[0] == "delivered", "the row delivered")
    finally:
        worker.stop()
    assert upstream.received["o-1:tx-1"] == 2  # the second delivery, after the lease
    assert upstream.accepted_count["o-1:tx-1"] == 1  # one case upstream
    assert _state_and_case(db_sessions)[1] == upstream.accepted["o-1:tx-1"]["case_number"]
