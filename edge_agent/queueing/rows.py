"""Row helpers of the queue: pure functions over an open sqlite3 connection.

They read and change the tables of ``store.py`` inside the caller's transaction and
build the event record an operation writes; nothing here locks, commits or logs.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import datetime
from typing import Any

from edge_agent.queueing.errors import NoCurrentTicket, UnknownWindow
from edge_agent.queueing.models import Ticket, TicketStatus


def event(kind: str, now: datetime, **data: Any) -> dict[str, Any]:
    """The event record of one operation (``queue.<kind>``), stamped with the local day."""
    return {
        "id": uuid.uuid4().hex,
        "kind": f"queue.{kind}",
        "ts": now.isoformat(timespec="seconds"),
        "day": now.date().isoformat(),
        **data,
    }


def ticket(row: sqlite3.Row) -> Ticket:
    """A ``tickets`` row as a ``Ticket``."""
    return Ticket(
        day=row["day"],
        number=row["number"],
        business_type=row["business_type"],
        status=TicketStatus(row["status"]),
        window=row["window"],
        target_window=row["target_window"],
        issued_at=row["issued_at"],
        calls=row["calls"],
    )


def ticket_by_id(conn: sqlite3.Connection, ticket_id: int) -> Ticket:
    """The ticket with that row id, as it is now in this transaction."""
    return ticket(conn.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)).fetchone())


def window(conn: sqlite3.Connection, name: str) -> sqlite3.Row:
    """The ``windows`` row of a window; ``UnknownWindow`` if it is not configured."""
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM windows WHERE window = ?", (name,)
    ).fetchone()
    if row is None:
        raise UnknownWindow(f"window {name!r} is not configured")
    return row


def callable_clause(window: sqlite3.Row) -> tuple[str, list[Any]]:
    """SQL condition (and its arguments) for the tickets this window may call."""
    codes = json.loads(window["business_types"])
    marks = ",".join("?" * len(codes)) or "NULL"
    clause = f"(target_window = ? OR (target_window IS NULL AND business_type IN ({marks})))"
    return clause, [window["window"], *codes]


def waiting_for(conn: sqlite3.Connection, window: sqlite3.Row, day: str) -> int:
    """How many tickets of ``day`` wait that this window could call."""
    clause, args = callable_clause(window)
    row = conn.execute(
        f"SELECT COUNT(*) FROM tickets WHERE day = ? AND status = 'waiting' AND {clause}",  # noqa: S608 (placeholders only)
        [day, *args],
    ).fetchone()
    return int(row[0])


def current(conn: sqlite3.Connection, window: sqlite3.Row) -> sqlite3.Row:
    """The ticket row the window serves now; ``NoCurrentTicket`` if none."""
    if window["current_ticket"] is None:
        raise NoCurrentTicket(f"window {window['window']} serves no ticket now")
    row: sqlite3.Row = conn.execute(
        "SELECT * FROM tickets WHERE id = ?", (window["current_ticket"],)
    ).fetchone()
    return row


def set_status(
    conn: sqlite3.Connection,
    ticket_id: int,
    status: TicketStatus,
    now: datetime,
    **cols: Any,
) -> None:
    """Set a ticket's status (and any ``cols``) and stamp ``updated_at``."""
    sets = "".join(f", {c} = ?" for c in cols)  # column names come from the queue package
    conn.execute(
        f"UPDATE tickets SET status = ?, updated_at = ?{sets} WHERE id = ?",  # noqa: S608
        [status.value, now.isoformat(), *cols.values(), ticket_id],
    )


def finish_current(conn: sqlite3.Connection, window: sqlite3.Row, now: datetime) -> str | None:
    """Free the window; a ticket still being called there is done. Returns its number."""
    if window["current_ticket"] is None:
        return None
    row = current(conn, window)
    if row["status"] == TicketStatus.CALLED.value:
        set_status(conn, row["id"], TicketStatus.DONE, now)
    conn.execute("UPDATE windows SET current_ticket = NULL WHERE window = ?", (window["window"],))
    return str(row["number"])
