"""Window configuration of the queue: which windows exist and whom they serve.

``configure`` sets up one window (the clerks' API); ``apply`` makes the windows exactly
the agent config's ``[[queue_windows]]`` and retires the others. Both run inside the
caller's transaction and return the event records to write.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from edge_agent.queueing import rows
from edge_agent.queueing.models import QueueResult, TicketStatus


def configure(
    conn: sqlite3.Connection, now: datetime, window: str, codes: list[str], *, paused: bool
) -> QueueResult:
    """Create a window or change its business types (an existing window keeps its pause)."""
    conn.execute(
        "INSERT INTO windows (window, business_types, paused) VALUES (?, ?, ?) "
        "ON CONFLICT (window) DO UPDATE SET business_types = excluded.business_types",
        (window, json.dumps(codes), int(paused)),
    )
    event = rows.event("window_configured", now, window=window, business_types=codes)
    return QueueResult(event=event)


def apply(
    conn: sqlite3.Connection, wanted: dict[str, list[str]], now: datetime
) -> list[dict[str, Any]]:
    """Make the windows exactly ``wanted`` (name -> business type codes); the events.

    A window whose business types already match records nothing, so applying the same
    config twice changes nothing.
    """
    events: list[dict[str, Any]] = []
    existing = {str(row["window"]): row for row in conn.execute("SELECT * FROM windows").fetchall()}
    for name, codes in wanted.items():
        row = existing.get(name)
        if row is not None and json.loads(row["business_types"]) == codes:
            continue
        conn.execute(
            "INSERT INTO windows (window, business_types) VALUES (?, ?) ON CONFLICT "
            "(window) DO UPDATE SET business_types = excluded.business_types",
            (name, json.dumps(codes)),
        )
        events.append(rows.event("window_configured", now, window=name, business_types=codes))
    events.extend(
        retire_window(conn, existing[name], now) for name in sorted(set(existing) - set(wanted))
    )
    return events


def retire_window(conn: sqlite3.Connection, window: sqlite3.Row, now: datetime) -> dict[str, Any]:
    """Remove a window; its tickets wait again in their business queues. The event."""
    name = str(window["window"])
    returned: str | None = None
    if window["current_ticket"] is not None:
        row = rows.current(conn, window)
        if row["status"] == TicketStatus.CALLED.value:
            rows.set_status(conn, row["id"], TicketStatus.WAITING, now, window=None)
            returned = str(row["number"])
    released = conn.execute(
        "UPDATE tickets SET target_window = NULL, updated_at = ? "
        "WHERE target_window = ? AND status = 'waiting'",
        (now.isoformat(), name),
    ).rowcount
    conn.execute("DELETE FROM windows WHERE window = ?", (name,))
    return rows.event(
        "window_retired", now, window=name, returned_ticket=returned, released=released
    )
