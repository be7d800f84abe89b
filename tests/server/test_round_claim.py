"""A delivery round claims its rows in one go (``routing.store.claim``).

Two server processes running rounds over the same inbox must never both hold a row;
a row already leased, delivered or dead is not taken; an expired lease is. Real SQLite
and PostgreSQL; two threads with sessions of their own stand for the two processes.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from fleet_server.models import InboxEntry
from fleet_server.routing import store


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
