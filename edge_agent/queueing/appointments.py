"""Appointments (预约): the day's bookings the agent knows, and checking one in.

A citizen books on the provincial app and gets a booking reference (预约码). The clerk
app loads the bookings into the agent (``POST /v1/appointments``, docs/queue.md,
"Appointments"); at the kiosk the citizen enters or scans the reference and gets a
ticket of the booked business type with the booking's priority, so it is called
before walk-in tickets. The check-in marks the booking used and issues the ticket in
one transaction: a crash never leaves a used booking without its ticket, or a booking
that checks in twice. A no-show expires: once its slot has ended and the grace period
(``queue_appointment_grace_minutes``) has passed, or with its day when it has no slot,
check-in is refused as expired, and the queue state counts it. No personal data is
kept: a reference, a day, a business type, a slot.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Final

from edge_agent.queueing import operations
from edge_agent.queueing.errors import (
    AppointmentExpired,
    AppointmentNotFound,
    AppointmentUsed,
    AppointmentWrongDay,
)
from edge_agent.queueing.models import AppointmentCounts, BusinessType, QueueResult
from govedge_wire.config.models import APPOINTMENT_SLOT_PATTERN

__all__ = ["REFERENCE", "SLOT", "Appointment", "check_in", "counts", "expires_at", "load"]

# Booking references as provincial apps print them: letters, digits and dashes.
REFERENCE: Final = re.compile(r"^[A-Za-z0-9-]{4,40}$")
# A time slot "HH:MM-HH:MM" (outlet-local time), or "" for a booking of the whole day;
# the fleet config's bookings are checked with the same pattern.
SLOT: Final = re.compile(APPOINTMENT_SLOT_PATTERN)


@dataclass(frozen=True, slots=True, kw_only=True)
class Appointment:
    """One booking: its reference, day, business type, priority and time slot.

    References are compared in upper case (a scanned or typed code may differ in case).
    """

    reference: str
    day: date
    business_type: str
    priority: int = 1
    slot: str = ""  # e.g. "09:00-09:30", shown to the citizen only

    def __post_init__(self) -> None:
        if not REFERENCE.match(self.reference):
            raise ValueError("an appointment reference is 4-40 letters, digits or dashes")
        if not 1 <= self.priority <= 9:
            raise ValueError("an appointment's priority is 1-9 (walk-in tickets have 0)")
        if not SLOT.match(self.slot):
            raise ValueError('an appointment\'s slot is "HH:MM-HH:MM" or empty')


def expires_at(day: date, slot: str, grace: timedelta, now: datetime) -> datetime:
    """When a booking not checked in expires, in ``now``'s time zone (the outlet's).

    Its slot's end plus the grace period; a booking without a slot lasts its whole day.
    """
    if not slot:
        return datetime.combine(day + timedelta(days=1), time(), tzinfo=now.tzinfo)
    end = time.fromisoformat(slot.split("-")[1])
    return datetime.combine(day, end, tzinfo=now.tzinfo) + grace


def load(conn: sqlite3.Connection, appointments: list[Appointment]) -> int:
    """Add or update bookings by reference; one already checked in keeps that state.

    Returns how many were new. Runs in the caller's transaction.
    """
    before = conn.execute("SELECT COUNT(*) FROM appointments").fetchone()[0]
    for a in appointments:
        conn.execute(
            "INSERT INTO appointments (reference, day, business_type, priority, slot) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (reference) DO UPDATE SET "
            "day = excluded.day, business_type = excluded.business_type, "
            "priority = excluded.priority, slot = excluded.slot "
            "WHERE appointments.checked_in_at IS NULL",
            (a.reference.upper(), a.day.isoformat(), a.business_type, a.priority, a.slot),
        )
    after = conn.execute("SELECT COUNT(*) FROM appointments").fetchone()[0]
    return int(after - before)


def check_in(
    conn: sqlite3.Connection,
    now: datetime,
    reference: str,
    types: dict[str, BusinessType],
    grace: timedelta,
) -> QueueResult:
    """Issue the booking's ticket with its priority and mark the booking used."""
    row = conn.execute(
        "SELECT * FROM appointments WHERE reference = ?", (reference.strip().upper(),)
    ).fetchone()
    if row is None:
        raise AppointmentNotFound("no appointment has that booking code")
    today = now.date().isoformat()
    if row["checked_in_at"] is not None:
        raise AppointmentUsed(f"this appointment was already checked in (ticket {row['ticket']})")
    if row["day"] > today:
        raise AppointmentWrongDay(f"this appointment is booked for {row['day']}, not today")
    deadline = expires_at(date.fromisoformat(row["day"]), row["slot"], grace, now)
    if now >= deadline:
        slot = row["slot"] or "all day"
        raise AppointmentExpired(
            f"this appointment expired at {deadline:%Y-%m-%d %H:%M} "
            f"(slot {slot} of {row['day']}, not checked in in time)"
        )
    btype = types[row["business_type"]]  # checked against the types when loaded
    result = operations.issue(conn, now, btype, priority=int(row["priority"]))
    assert result.ticket is not None  # issue always returns its ticket
    conn.execute(
        "UPDATE appointments SET checked_in_at = ?, ticket = ? WHERE reference = ?",
        (now.isoformat(), result.ticket.number, row["reference"]),
    )
    result.event["appointment"] = row["reference"]
    return result


def counts(conn: sqlite3.Connection, now: datetime, grace: timedelta) -> AppointmentCounts:
    """Today's bookings: how many there are, checked in, and expired without a check-in."""
    today = now.date()
    rows = conn.execute(
        "SELECT slot, checked_in_at FROM appointments WHERE day = ?", (today.isoformat(),)
    ).fetchall()
    checked_in = sum(1 for r in rows if r["checked_in_at"] is not None)
    expired = sum(
        1
        for r in rows
        if r["checked_in_at"] is None and now >= expires_at(today, r["slot"], grace, now)
    )
    return AppointmentCounts(booked=len(rows), checked_in=checked_in, expired=expired)
