"""Appointments (预约): loaded by the clerk app, checked in at the kiosk, refused clearly.

Through the real local API with the printer simulator: a check-in prints the ticket and
jumps the walk-in queue; a wrong code, another day's booking and a second check-in are
each refused with their own error and change nothing (no ticket, no print, no event).
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.local_api.harness import Outlet, outlet

TZ = ZoneInfo("Asia/Shanghai")
# The day the pinned-clock tests (NINE, TEN) play on; tests on the real clock ask
# today() when they run, since a run may pass Shanghai's midnight after collection.
TODAY = datetime.now(TZ).date()
# The queue's clock in tests with time slots, so they do not depend on the hour they run.


def today() -> date:
    """The outlet's day now, by the real clock."""
    return datetime.now(TZ).date()


NINE = datetime.combine(TODAY, time(9, 0), tzinfo=TZ)
TEN = datetime.combine(TODAY, time(10, 0), tzinfo=TZ)


def run(tmp_path: Path, scenario: Any, **options: Any) -> None:
    async def main() -> None:
        async with outlet(tmp_path, **options) as o:
            async with asyncio.timeout(40):
                await scenario(o)

    asyncio.run(main())


async def load(o: Outlet, *bookings: dict[str, Any]) -> dict[str, Any]:
    response = await o.client.post(
        "/v1/appointments", headers=o.auth, json={"appointments": list(bookings)}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def check_in(o: Outlet, reference: str) -> Any:
    return await o.client.post(
        "/v1/appointments/check-in", headers=o.auth, json={"reference": reference}
    )


def test_check_in_prints_an_appointment_ticket_that_is_called_first(tmp_path: Path) -> None:
    async def scenario(o: Outlet) -> None:
        loaded = await load(
            o,
            {"reference": "YY-0001", "day": TODAY.isoformat(), "business_type": "social",
             "slot": "09:00-09:30"},
            {"reference": "YY-0002", "day": TODAY.isoformat(), "business_type": "tax"},
        )  # fmt: skip
        assert loaded == {"received": 2, "added": 2}
        walk_in = await o.client.post(
            "/v1/tickets", headers=o.auth, json={"business_type": "social"}
        )
        assert walk_in.json()["number"] == "A001"

        response = await check_in(o, "yy-0001")  # typed in lower case: the same booking
        assert response.status_code == 201, response.text
        ticket = response.json()
        assert ticket["number"] == "A002"
        assert ticket["appointment"] == "YY-0001"
        assert ticket["priority"] == 1
        assert ticket["waiting"] == 0  # nobody of its priority is ahead
        assert ticket["printed"] is True
        printed = o.printer.tickets[-1]
        assert "A002" in printed
        assert "社保医保(预约)" in printed
        entry = await o.runtime.outbox.read(ticket["tx_id"])
        assert entry is not None
        assert entry.meta.tx_kind == "queue.issue"

        called = await o.client.post("/v1/windows/3/call", headers=o.auth)
        assert called.json()["ticket"]["number"] == "A002"  # before the earlier walk-in
        called = await o.client.post("/v1/windows/3/call", headers=o.auth)
        assert called.json()["ticket"]["number"] == "A001"

        # Loading the list again (the clerk app refreshes it) keeps the check-in.
        again = await load(o, {"reference": "YY-0001", "day": TODAY.isoformat(),
                               "business_type": "social"})  # fmt: skip
        assert again == {"received": 1, "added": 0}
        assert (await check_in(o, "YY-0001")).json()["error"] == "appointment_used"

    run(tmp_path, scenario, queue_clock=lambda: NINE)


def test_each_refused_check_in_says_why_and_changes_nothing(tmp_path: Path) -> None:
    async def scenario(o: Outlet) -> None:
        day = today()
        tomorrow = (day + timedelta(days=1)).isoformat()
        yesterday = (day - timedelta(days=1)).isoformat()
        await load(
            o,
            {"reference": "YY-TOMORROW", "day": tomorrow, "business_type": "social"},
            {"reference": "YY-LATE", "day": yesterday, "business_type": "social"},
            {"reference": "YY-USED", "day": day.isoformat(), "business_type": "tax"},
        )
        assert (await check_in(o, "YY-USED")).status_code == 201
        before = (await o.client.get("/v1/queue", headers=o.auth)).json()
        printed_before = len(o.printer.tickets)
        outbox_before = (await o.runtime.outbox.stats()).depth

        cases = [
            ("NO-SUCH-CODE", 404, "appointment_not_found"),
            ("YY-TOMORROW", 409, "appointment_wrong_day"),
            ("YY-LATE", 409, "appointment_expired"),  # a no-show expires with its day
            ("YY-USED", 409, "appointment_used"),
        ]
        for reference, status, code in cases:
            response = await check_in(o, reference)
            assert response.status_code == status, (reference, response.text)
            body = response.json()
            assert body["error"] == code
            assert body["message"]
            assert body["hint"]

        assert (await o.client.get("/v1/queue", headers=o.auth)).json() == before
        assert len(o.printer.tickets) == printed_before
        assert (await o.runtime.outbox.stats()).depth == outbox_before

    run(tmp_path, scenario)


def test_bad_appointment_lists_are_refused_whole(tmp_path: Path) -> None:
    async def scenario(o: Outlet) -> None:
        unknown_type = await o.client.post(
            "/v1/appointments",
            headers=o.auth,
            json={"appointments": [
                {"reference": "YY-GOOD", "day": today().isoformat(), "business_type": "social"},
                {"reference": "YY-BAD", "day": today().isoformat(), "business_type": "nope"},
            ]},
        )  # fmt: skip
        assert unknown_type.status_code == 404
        assert unknown_type.json()["error"] == "unknown_business_type"
        # Nothing of the refused list was kept, the good booking included.
        assert (await check_in(o, "YY-GOOD")).json()["error"] == "appointment_not_found"

        bad_reference = await o.client.post(
            "/v1/appointments",
            headers=o.auth,
            json={"appointments": [
                {"reference": "has space", "day": today().isoformat(), "business_type": "social"}
            ]},
        )  # fmt: skip
        assert bad_reference.status_code == 422
        assert bad_reference.json()["error"] == "invalid_request"

        bad_slot = await o.client.post(
            "/v1/appointments",
            headers=o.auth,
            json={"appointments": [
                {"reference": "YY-SLOT", "day": today().isoformat(), "business_type": "social",
                 "slot": "morning"}
            ]},
        )  # fmt: skip
        assert bad_slot.status_code == 422
        assert bad_slot.json()["error"] == "invalid_request"
        assert (await check_in(o, "YY-SLOT")).json()["error"] == "appointment_not_found"

    run(tmp_path, scenario)


def test_a_no_show_expires_after_its_slot_and_the_grace_period(tmp_path: Path) -> None:
    """At 10:00 with 15 minutes' grace: a 09:00-09:30 booking has expired, 09:30-09:50 not."""

    async def scenario(o: Outlet) -> None:
        def booking(reference: str, slot: str = "") -> dict[str, Any]:
            return {"reference": reference, "day": TODAY.isoformat(), "business_type": "social",
                    "slot": slot}  # fmt: skip

        await load(
            o,
            booking("YY-OVER", "09:00-09:30"),
            booking("YY-GRACE", "09:30-09:50"),
            booking("YY-LATER", "14:00-14:30"),
            booking("YY-ALLDAY"),
        )
        state = (await o.client.get("/v1/queue", headers=o.auth)).json()
        assert state["appointments"] == {"booked": 4, "checked_in": 0, "expired": 1}
        printed_before = len(o.printer.tickets)

        expired = await check_in(o, "YY-OVER")
        assert expired.status_code == 409, expired.text
        body = expired.json()
        assert body["error"] == "appointment_expired"
        assert "09:45" in body["message"]  # the slot's end plus the grace period
        assert body["hint"]
        assert (await o.client.get("/v1/queue", headers=o.auth)).json() == state
        assert len(o.printer.tickets) == printed_before

        in_grace = await check_in(o, "YY-GRACE")  # ended at 09:50, grace until 10:05
        assert in_grace.status_code == 201, in_grace.text
        assert in_grace.json()["appointment"] == "YY-GRACE"
        state = (await o.client.get("/v1/queue", headers=o.auth)).json()
        assert state["appointments"] == {"booked": 4, "checked_in": 1, "expired": 1}

    run(tmp_path, scenario, queue_clock=lambda: TEN, appointment_grace=timedelta(minutes=15))


def test_a_shorter_grace_period_expires_a_booking_sooner(tmp_path: Path) -> None:

    async def scenario(o: Outlet) -> None:
        await load(o, {"reference": "YY-GRACE", "day": TODAY.isoformat(),
                       "business_type": "social", "slot": "09:30-09:50"})  # fmt: skip
        response = await check_in(o, "YY-GRACE")
        assert response.status_code == 409
        assert response.json()["error"] == "appointment_expired"
        state = (await o.client.get("/v1/queue", headers=o.auth)).json()
        assert state["appointments"] == {"booked": 1, "checked_in": 0, "expired": 1}

    run(tmp_path, scenario, queue_clock=lambda: TEN, appointment_grace=timedelta(minutes=5))


def test_higher_appointment_priorities_are_called_first_then_by_check_in_time(
    tmp_path: Path,
) -> None:
    """Bookings of priorities 2 and 5 against each other and a walk-in (priority 0): the
    window calls 5 first, then the two of priority 2 in the order they checked in, then
    the walk-in, although the walk-in came first and the 5 checked in last."""

    async def scenario(o: Outlet) -> None:
        day = today().isoformat()
        await load(
            o,
            {"reference": "PR-0002", "day": day, "business_type": "social", "priority": 2},
            {"reference": "PR-0005", "day": day, "business_type": "social", "priority": 5},
            {"reference": "PR-2002", "day": day, "business_type": "social", "priority": 2},
        )
        walk_in = await o.client.post(
            "/v1/tickets", headers=o.auth, json={"business_type": "social"}
        )
        assert walk_in.json()["number"] == "A001"
        issued = {}
        for reference in ("PR-0002", "PR-2002", "PR-0005"):
            response = await check_in(o, reference)
            assert response.status_code == 201, response.text
            issued[reference] = response.json()
        assert [t["priority"] for t in issued.values()] == [2, 2, 5]
        # Who is ahead of each: its own and higher priorities only, not the walk-in.
        assert [t["waiting"] for t in issued.values()] == [0, 1, 0]

        called = []
        for _ in range(4):
            answer = await o.client.post("/v1/windows/3/call", headers=o.auth)
            assert answer.status_code == 200, answer.text
            called.append(answer.json()["ticket"]["number"])
        assert called == [
            issued["PR-0005"]["number"],
            issued["PR-0002"]["number"],
            issued["PR-2002"]["number"],
            "A001",
        ]

    run(tmp_path, scenario)
