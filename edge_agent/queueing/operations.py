"""The queue's operations: issue, call, recall, skip/hold/finish, transfer, call-back, etc.

Rules (docs/queue.md, "Rules"): a ticket is prefix + 3 digits (``A012``), numbered per
business type and per outlet-local day, so the counter starts at 1 every day. A window
calls the oldest waiting ticket of its business types (or one transferred to it).
Recall, skip (弃号), transfer, hold, call-back, pause and evaluate act on the window's
current ticket. Each function runs inside the caller's transaction and returns the
``QueueResult`` whose event record the caller writes in that same transaction.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from edge_agent.queueing import rows
from edge_agent.queueing.announce import announcement
from edge_agent.queueing.errors import QueueError, TicketNotFound, WindowPaused
from edge_agent.queueing.models import (
    BusinessType,
    LedPayload,
    QueueResult,
    Ticket,
    TicketStatus,
)

MAX_PER_DAY = 999


def issue(
    conn: sqlite3.Connection, now: datetime, btype: BusinessType, *, priority: int = 0
) -> QueueResult:
    """The next ticket of a business type today; ``waiting`` = people ahead.

    A ticket with a ``priority`` above 0 (an appointment's) is called before every
    waiting ticket of a lower priority, so only those of at least its priority are ahead.
    """
    day = now.date().isoformat()
    row = conn.execute(
        "SELECT last FROM counters WHERE day = ? AND business_type = ?", (day, btype.code)
    ).fetchone()
    seq = (row["last"] if row else 0) + 1
    if seq > MAX_PER_DAY:
        raise QueueError(f"business type {btype.code} has issued {MAX_PER_DAY} tickets today")
    conn.execute(
        "INSERT INTO counters (day, business_type, last) VALUES (?, ?, ?) "
        "ON CONFLICT (day, business_type) DO UPDATE SET last = excluded.last",
        (day, btype.code, seq),
    )
    number = f"{btype.prefix}{seq:03d}"
    ahead = conn.execute(
        "SELECT COUNT(*) FROM tickets WHERE day = ? AND status = 'waiting' "
        "AND business_type = ? AND priority >= ?",
        (day, btype.code, priority),
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO tickets (day, number, business_type, status, issued_at, updated_at, "
        "priority) VALUES (?, ?, ?, 'waiting', ?, ?, ?)",
        (day, number, btype.code, now.isoformat(), now.isoformat(), priority),
    )
    ticket = Ticket(
        day=day,
        number=number,
        business_type=btype.code,
        status=TicketStatus.WAITING,
        issued_at=now.isoformat(),
    )
    extra = {"priority": priority} if priority else {}
    event = rows.event(
        "issue", now, ticket=number, business_type=btype.code, waiting=ahead, **extra
    )
    return QueueResult(event=event, ticket=ticket, waiting=int(ahead))


def call(conn: sqlite3.Connection, now: datetime, window: str, template: str) -> QueueResult:
    """Finish the window's current ticket and call the next one (``ticket`` None if none)."""
    win = rows.window(conn, window)
    if win["paused"]:
        raise WindowPaused(f"window {window} is paused; resume it first")
    finished = rows.finish_current(conn, win, now)
    clause, args = rows.callable_clause(win)
    row = conn.execute(
        f"SELECT id FROM tickets WHERE day = ? AND status = 'waiting' AND {clause} "  # noqa: S608 (placeholders only)
        "ORDER BY priority DESC, issued_at, id LIMIT 1",
        [now.date().isoformat(), *args],
    ).fetchone()
    if row is None:
        event = rows.event("call_empty", now, window=window, finished=finished)
        return QueueResult(event=event, led=LedPayload(window=window, ticket=None, waiting=0))
    rows.set_status(
        conn, row["id"], TicketStatus.CALLED, now, window=window, target_window=None, calls=1
    )
    conn.execute("UPDATE windows SET current_ticket = ? WHERE window = ?", (row["id"], window))
    return _presented(conn, "call", win, row["id"], now, template, finished=finished)


def recall(conn: sqlite3.Connection, now: datetime, window: str, template: str) -> QueueResult:
    """Announce the current ticket again (重呼)."""
    win = rows.window(conn, window)
    row = rows.current(conn, win)
    conn.execute("UPDATE tickets SET calls = calls + 1 WHERE id = ?", (row["id"],))
    return _presented(conn, "recall", win, row["id"], now, template, recall=True)


def retire_current(
    conn: sqlite3.Connection, now: datetime, window: str, kind: str, status: TicketStatus
) -> QueueResult:
    """End the current ticket with ``status`` (skip, hold, done) without calling the next."""
    win = rows.window(conn, window)
    row = rows.current(conn, win)
    rows.set_status(conn, row["id"], status, now)
    conn.execute("UPDATE windows SET current_ticket = NULL WHERE window = ?", (window,))
    waiting = rows.waiting_for(conn, win, now.date().isoformat())
    event = rows.event(
        kind,
        now,
        ticket=row["number"],
        business_type=row["business_type"],
        window=window,
        waiting=waiting,
    )
    return QueueResult(
        event=event,
        ticket=rows.ticket_by_id(conn, row["id"]),
        waiting=waiting,
        led=LedPayload(window=window, ticket=None, waiting=waiting),
    )


def transfer(
    conn: sqlite3.Connection,
    now: datetime,
    window: str,
    to_business_type: str | None,
    to_window: str | None,
) -> QueueResult:
    """转移: the current ticket waits again (same number and place) in another queue."""
    win = rows.window(conn, window)
    if to_window is not None:
        rows.window(conn, to_window)
    row = rows.current(conn, win)
    rows.set_status(
        conn,
        row["id"],
        TicketStatus.WAITING,
        now,
        window=None,
        business_type=to_business_type or row["business_type"],
        target_window=to_window,
    )
    conn.execute("UPDATE windows SET current_ticket = NULL WHERE window = ?", (window,))
    waiting = rows.waiting_for(conn, win, now.date().isoformat())
    event = rows.event(
        "transfer",
        now,
        ticket=row["number"],
        window=window,
        business_type=row["business_type"],
        to_business_type=to_business_type,
        to_window=to_window,
        waiting=waiting,
    )
    return QueueResult(
        event=event,
        ticket=rows.ticket_by_id(conn, row["id"]),
        waiting=waiting,
        led=LedPayload(window=window, ticket=None, waiting=waiting),
    )


def call_back(
    conn: sqlite3.Connection, now: datetime, window: str, number: str, template: str
) -> QueueResult:
    """回呼: call a held or skipped ticket of today to this window."""
    win = rows.window(conn, window)
    if win["paused"]:
        raise WindowPaused(f"window {window} is paused; resume it first")
    row = conn.execute(
        "SELECT * FROM tickets WHERE day = ? AND number = ? AND status IN ('held', 'skipped')",
        (now.date().isoformat(), number),
    ).fetchone()
    if row is None:
        raise TicketNotFound(f"ticket {number} is not held or skipped today")
    finished = rows.finish_current(conn, win, now)
    rows.set_status(
        conn, row["id"], TicketStatus.CALLED, now, window=window, calls=row["calls"] + 1
    )
    conn.execute("UPDATE windows SET current_ticket = ? WHERE window = ?", (row["id"], window))
    return _presented(
        conn,
        "call_back",
        win,
        row["id"],
        now,
        template,
        finished=finished,
        previous_status=row["status"],
    )


def pause(conn: sqlite3.Connection, now: datetime, window: str, paused: bool) -> QueueResult:
    """暂停 (or resume with ``paused=False``): a paused window calls nobody."""
    win = rows.window(conn, window)
    conn.execute("UPDATE windows SET paused = ? WHERE window = ?", (int(paused), window))
    waiting = rows.waiting_for(conn, win, now.date().isoformat())
    event = rows.event("pause" if paused else "resume", now, window=window, waiting=waiting)
    return QueueResult(
        event=event, waiting=waiting, led=LedPayload(window=window, ticket=None, waiting=waiting)
    )


def evaluate(conn: sqlite3.Connection, now: datetime, window: str) -> QueueResult:
    """评价: ask the citizen at the window to rate; the agent forwards it to the pad."""
    win = rows.window(conn, window)
    row = rows.current(conn, win)
    event = rows.event(
        "evaluate", now, ticket=row["number"], business_type=row["business_type"], window=window
    )
    return QueueResult(event=event, ticket=rows.ticket(row))


def close_day(conn: sqlite3.Connection, now: datetime) -> QueueResult:
    """Batch 弃号: every ticket of an earlier day still waiting, held or called is skipped."""
    day = now.date().isoformat()
    count = conn.execute(
        "UPDATE tickets SET status = 'skipped', updated_at = ? "
        "WHERE day < ? AND status IN ('waiting', 'held', 'called')",
        (now.isoformat(), day),
    ).rowcount
    conn.execute(
        "UPDATE windows SET current_ticket = NULL WHERE current_ticket IN "
        "(SELECT id FROM tickets WHERE day < ?)",
        (day,),
    )
    return QueueResult(event=rows.event("close_day", now, skipped=count))


def _presented(
    conn: sqlite3.Connection,
    kind: str,
    window: sqlite3.Row,
    ticket_id: int,
    now: datetime,
    template: str,
    *,
    recall: bool = False,
    **extra: Any,
) -> QueueResult:
    """The result of showing a ticket at a window: announcement text and LED payload."""
    ticket = rows.ticket_by_id(conn, ticket_id)
    waiting = rows.waiting_for(conn, window, now.date().isoformat())
    name = str(window["window"])
    text = announcement(ticket.number, name, recall=recall, template=template)
    event = rows.event(
        kind,
        now,
        ticket=ticket.number,
        business_type=ticket.business_type,
        window=name,
        waiting=waiting,
        **extra,
    )
    return QueueResult(
        event=event,
        ticket=ticket,
        announcement=text,
        waiting=waiting,
        led=LedPayload(window=name, ticket=ticket.number, waiting=waiting),
    )
