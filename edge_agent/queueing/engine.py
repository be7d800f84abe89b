"""The queue engine: tickets, window operations and their event records.

Rules (docs/queue.md, "Rules"): a ticket is prefix + 3 digits (``A012``), numbered per business
type and per outlet-local day (timezone configurable, default Asia/Shanghai), so the
counter starts at 1 every day. A window calls the oldest waiting ticket of its business
types (or one transferred to it). Recall, skip (弃号), transfer, hold, call-back, pause
and evaluate act on the window's current ticket. Every operation writes its event record
in the same SQLite transaction as the state change; ``events_after`` feeds the outbox.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from zoneinfo import ZoneInfo

from edge_agent.queueing.announce import DEFAULT_TEMPLATE, announcement
from edge_agent.queueing.errors import (
    NoCurrentTicket,
    QueueError,
    TicketNotFound,
    UnknownBusinessType,
    UnknownWindow,
    WindowPaused,
)
from edge_agent.queueing.models import (
    BusinessType,
    LedPayload,
    QueueResult,
    QueueSnapshot,
    Ticket,
    TicketStatus,
    WindowConfig,
    WindowSnapshot,
)
from edge_agent.queueing.store import QueueStore

logger = logging.getLogger(__name__)

MAX_PER_DAY = 999
Clock = Callable[[], datetime]


class QueueEngine:
    """The outlet's queue, persisted in ``data_dir / "queue.sqlite3"``.

    Use as an async context manager. ``clock`` returns an aware ``datetime`` (tests pass
    a fake one); ``timezone`` decides which local day a ticket belongs to.
    """

    def __init__(
        self,
        data_dir: Path,
        business_types: Sequence[BusinessType],
        *,
        timezone: str = "Asia/Shanghai",
        template: str = DEFAULT_TEMPLATE,
        clock: Clock | None = None,
    ) -> None:
        prefixes = [b.prefix for b in business_types]
        if len(set(prefixes)) != len(prefixes) or not business_types:
            raise ValueError("business types must be non-empty with distinct prefixes")
        self.types = {b.code: b for b in business_types}
        self.tz = ZoneInfo(timezone)
        self.template = template
        self._clock = clock or (lambda: datetime.now(self.tz))
        self._path = data_dir / "queue.sqlite3"
        self._store: QueueStore | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        self._store = await asyncio.to_thread(QueueStore, self._path)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        store, self._store = self._store, None
        if store is not None:
            await asyncio.to_thread(store.close)

    # --- plumbing ------------------------------------------------------------------

    def _now(self) -> datetime:
        return self._clock().astimezone(self.tz)

    async def _run(self, op: Callable[[sqlite3.Connection, datetime], QueueResult]) -> QueueResult:
        store = self._store
        if store is None:
            raise QueueError("the queue engine is not open")
        now = self._now()

        def work() -> QueueResult:
            with store.transaction() as conn:
                result = op(conn, now)
                store.add_event(conn, result.event)
                return result

        async with self._lock:
            result = await asyncio.to_thread(work)
        logger.info("queue %s %s", result.event["kind"], result.event.get("ticket", ""))
        return result

    def _event(self, kind: str, now: datetime, **data: Any) -> dict[str, Any]:
        return {
            "id": uuid.uuid4().hex,
            "kind": f"queue.{kind}",
            "ts": now.isoformat(timespec="seconds"),
            "day": now.date().isoformat(),
            **data,
        }

    # --- configuration -------------------------------------------------------------

    async def configure_window(
        self, window: str, business_types: Iterable[str], *, paused: bool = False
    ) -> QueueResult:
        """Create or change a window and the business types it serves."""
        codes = list(business_types)
        for code in codes:
            self._type(code)

        def op(conn: sqlite3.Connection, now: datetime) -> QueueResult:
            conn.execute(
                "INSERT INTO windows (window, business_types, paused) VALUES (?, ?, ?) "
                "ON CONFLICT (window) DO UPDATE SET business_types = excluded.business_types",
                (window, json.dumps(codes), int(paused)),
            )
            event = self._event("window_configured", now, window=window, business_types=codes)
            return QueueResult(event=event)

        return await self._run(op)

    async def apply_windows(self, windows: Sequence[WindowConfig]) -> list[dict[str, Any]]:
        """Make the queue's windows exactly ``windows`` (the agent config), in one transaction.

        Idempotent: a window whose business types already match is left alone and records
        nothing, so a restart with the same config changes nothing. A new or changed
        window records ``queue.window_configured`` (its paused state and current ticket
        are kept). A window no longer declared is retired (``queue.window_retired``): its
        current ticket waits again in its business queue, keeping its number and place
        (as after a 转移), tickets transferred to it wait in their business queues, and
        the window is gone (operations on it raise ``UnknownWindow``). Returns the events.
        """
        wanted: dict[str, list[str]] = {}
        for config in windows:
            if config.window in wanted:
                raise ValueError(f"window {config.window!r} is declared twice")
            for code in config.business_types:
                self._type(code)
            wanted[config.window] = list(config.business_types)
        store = self._require()
        now = self._now()

        def work() -> list[dict[str, Any]]:
            events: list[dict[str, Any]] = []
            with store.transaction() as conn:
                rows = {
                    str(row["window"]): row
                    for row in conn.execute("SELECT * FROM windows").fetchall()
                }
                for name, codes in wanted.items():
                    row = rows.get(name)
                    if row is not None and json.loads(row["business_types"]) == codes:
                        continue
                    conn.execute(
                        "INSERT INTO windows (window, business_types) VALUES (?, ?) ON CONFLICT "
                        "(window) DO UPDATE SET business_types = excluded.business_types",
                        (name, json.dumps(codes)),
                    )
                    events.append(
                        self._event("window_configured", now, window=name, business_types=codes)
                    )
                events.extend(
                    self._retire_window(conn, rows[name], now)
                    for name in sorted(set(rows) - set(wanted))
                )
                for event in events:
                    store.add_event(conn, event)
            return events

        async with self._lock:
            events = await asyncio.to_thread(work)
        for event in events:
            logger.info("queue %s window %s", event["kind"], event["window"])
        return events

    def _retire_window(
        self, conn: sqlite3.Connection, window: sqlite3.Row, now: datetime
    ) -> dict[str, Any]:
        name = str(window["window"])
        returned: str | None = None
        if window["current_ticket"] is not None:
            row = self._current(conn, window)
            if row["status"] == TicketStatus.CALLED.value:
                self._set_status(conn, row["id"], TicketStatus.WAITING, now, window=None)
                returned = str(row["number"])
        released = conn.execute(
            "UPDATE tickets SET target_window = NULL, updated_at = ? "
            "WHERE target_window = ? AND status = 'waiting'",
            (now.isoformat(), name),
        ).rowcount
        conn.execute("DELETE FROM windows WHERE window = ?", (name,))
        return self._event(
            "window_retired", now, window=name, returned_ticket=returned, released=released
        )

    def _type(self, code: str) -> BusinessType:
        try:
            return self.types[code]
        except KeyError:
            raise UnknownBusinessType(f"no business type {code!r} is configured") from None

    # --- queries (run inside transactions) ---------------------------------------

    @staticmethod
    def _ticket(row: sqlite3.Row) -> Ticket:
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

    @staticmethod
    def _window(conn: sqlite3.Connection, window: str) -> sqlite3.Row:
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM windows WHERE window = ?", (window,)
        ).fetchone()
        if row is None:
            raise UnknownWindow(f"window {window!r} is not configured")
        return row

    @staticmethod
    def _callable_clause(window: sqlite3.Row) -> tuple[str, list[Any]]:
        codes = json.loads(window["business_types"])
        marks = ",".join("?" * len(codes)) or "NULL"
        clause = f"(target_window = ? OR (target_window IS NULL AND business_type IN ({marks})))"
        return clause, [window["window"], *codes]

    def _waiting_for(self, conn: sqlite3.Connection, window: sqlite3.Row, day: str) -> int:
        clause, args = self._callable_clause(window)
        row = conn.execute(
            f"SELECT COUNT(*) FROM tickets WHERE day = ? AND status = 'waiting' AND {clause}",  # noqa: S608 (placeholders only)
            [day, *args],
        ).fetchone()
        return int(row[0])

    def _current(self, conn: sqlite3.Connection, window: sqlite3.Row) -> sqlite3.Row:
        if window["current_ticket"] is None:
            raise NoCurrentTicket(f"window {window['window']} serves no ticket now")
        row: sqlite3.Row = conn.execute(
            "SELECT * FROM tickets WHERE id = ?", (window["current_ticket"],)
        ).fetchone()
        return row

    def _set_status(
        self,
        conn: sqlite3.Connection,
        ticket_id: int,
        status: TicketStatus,
        now: datetime,
        **cols: Any,
    ) -> None:
        sets = "".join(f", {c} = ?" for c in cols)  # column names come from this module
        conn.execute(
            f"UPDATE tickets SET status = ?, updated_at = ?{sets} WHERE id = ?",  # noqa: S608
            [status.value, now.isoformat(), *cols.values(), ticket_id],
        )

    def _finish_current(
        self, conn: sqlite3.Connection, window: sqlite3.Row, now: datetime
    ) -> str | None:
        if window["current_ticket"] is None:
            return None
        row = self._current(conn, window)
        if row["status"] == TicketStatus.CALLED.value:
            self._set_status(conn, row["id"], TicketStatus.DONE, now)
        conn.execute(
            "UPDATE windows SET current_ticket = NULL WHERE window = ?", (window["window"],)
        )
        return str(row["number"])

    def _presented(
        self,
        conn: sqlite3.Connection,
        kind: str,
        window: sqlite3.Row,
        ticket_id: int,
        now: datetime,
        *,
        recall: bool = False,
        **extra: Any,
    ) -> QueueResult:
        row = conn.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        ticket = self._ticket(row)
        waiting = self._waiting_for(conn, window, now.date().isoformat())
        name = str(window["window"])
        text = announcement(ticket.number, name, recall=recall, template=self.template)
        event = self._event(
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

    # --- operations ----------------------------------------------------------------

    async def issue(self, business_type: str) -> QueueResult:
        """Issue the next ticket of a business type today; ``waiting`` = people ahead."""
        btype = self._type(business_type)

        def op(conn: sqlite3.Connection, now: datetime) -> QueueResult:
            day = now.date().isoformat()
            row = conn.execute(
                "SELECT last FROM counters WHERE day = ? AND business_type = ?", (day, btype.code)
            ).fetchone()
            seq = (row["last"] if row else 0) + 1
            if seq > MAX_PER_DAY:
                raise QueueError(
                    f"business type {btype.code} has issued {MAX_PER_DAY} tickets today"
                )
            conn.execute(
                "INSERT INTO counters (day, business_type, last) VALUES (?, ?, ?) "
                "ON CONFLICT (day, business_type) DO UPDATE SET last = excluded.last",
                (day, btype.code, seq),
            )
            number = f"{btype.prefix}{seq:03d}"
            ahead = conn.execute(
                "SELECT COUNT(*) FROM tickets WHERE day = ? AND status = 'waiting' "
                "AND business_type = ?",
                (day, btype.code),
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO tickets (day, number, business_type, status, issued_at, updated_at) "
                "VALUES (?, ?, ?, 'waiting', ?, ?)",
                (day, number, btype.code, now.isoformat(), now.isoformat()),
            )
            ticket = Ticket(
                day=day,
                number=number,
                business_type=btype.code,
                status=TicketStatus.WAITING,
                issued_at=now.isoformat(),
            )
            event = self._event(
                "issue", now, ticket=number, business_type=btype.code, waiting=ahead
            )
            return QueueResult(event=event, ticket=ticket, waiting=int(ahead))

        return await self._run(op)

    async def call(self, window: str) -> QueueResult:
        """Finish the window's current ticket and call the next one (``ticket`` None if none)."""

        def op(conn: sqlite3.Connection, now: datetime) -> QueueResult:
            win = self._window(conn, window)
            if win["paused"]:
                raise WindowPaused(f"window {window} is paused; resume it first")
            finished = self._finish_current(conn, win, now)
            clause, args = self._callable_clause(win)
            row = conn.execute(
                f"SELECT id FROM tickets WHERE day = ? AND status = 'waiting' AND {clause} "  # noqa: S608 (placeholders only)
                "ORDER BY issued_at, id LIMIT 1",
                [now.date().isoformat(), *args],
            ).fetchone()
            if row is None:
                waiting = 0
                event = self._event("call_empty", now, window=window, finished=finished)
                led = LedPayload(window=window, ticket=None, waiting=waiting)
                return QueueResult(event=event, led=led)
            self._set_status(
                conn,
                row["id"],
                TicketStatus.CALLED,
                now,
                window=window,
                target_window=None,
                calls=1,
            )
            conn.execute(
                "UPDATE windows SET current_ticket = ? WHERE window = ?", (row["id"], window)
            )
            return self._presented(conn, "call", win, row["id"], now, finished=finished)

        return await self._run(op)

    async def recall(self, window: str) -> QueueResult:
        """Announce the current ticket again (重呼)."""

        def op(conn: sqlite3.Connection, now: datetime) -> QueueResult:
            win = self._window(conn, window)
            row = self._current(conn, win)
            conn.execute("UPDATE tickets SET calls = calls + 1 WHERE id = ?", (row["id"],))
            return self._presented(conn, "recall", win, row["id"], now, recall=True)

        return await self._run(op)

    async def _retire_current(self, window: str, kind: str, status: TicketStatus) -> QueueResult:
        def op(conn: sqlite3.Connection, now: datetime) -> QueueResult:
            win = self._window(conn, window)
            row = self._current(conn, win)
            self._set_status(conn, row["id"], status, now)
            conn.execute("UPDATE windows SET current_ticket = NULL WHERE window = ?", (window,))
            waiting = self._waiting_for(conn, win, now.date().isoformat())
            event = self._event(
                kind,
                now,
                ticket=row["number"],
                business_type=row["business_type"],
                window=window,
                waiting=waiting,
            )
            return QueueResult(
                event=event,
                ticket=self._ticket(
                    conn.execute("SELECT * FROM tickets WHERE id = ?", (row["id"],)).fetchone()
                ),
                waiting=waiting,
                led=LedPayload(window=window, ticket=None, waiting=waiting),
            )

        return await self._run(op)

    async def skip(self, window: str) -> QueueResult:
        """弃号: the citizen did not come; the ticket can still be called back today."""
        return await self._retire_current(window, "skip", TicketStatus.SKIPPED)

    async def hold(self, window: str) -> QueueResult:
        """挂起: park the current ticket (papers missing) to call it back later."""
        return await self._retire_current(window, "hold", TicketStatus.HELD)

    async def finish(self, window: str) -> QueueResult:
        """Mark the current ticket served without calling the next one."""
        return await self._retire_current(window, "done", TicketStatus.DONE)

    async def transfer(
        self, window: str, *, to_business_type: str | None = None, to_window: str | None = None
    ) -> QueueResult:
        """转移: the current ticket waits again, in another queue or for another window.

        It keeps its number and its place (issue time) in the new queue.
        """
        if (to_business_type is None) == (to_window is None):
            raise ValueError("give exactly one of to_business_type and to_window")
        if to_business_type is not None:
            self._type(to_business_type)

        def op(conn: sqlite3.Connection, now: datetime) -> QueueResult:
            win = self._window(conn, window)
            if to_window is not None:
                self._window(conn, to_window)
            row = self._current(conn, win)
            self._set_status(
                conn,
                row["id"],
                TicketStatus.WAITING,
                now,
                window=None,
                business_type=to_business_type or row["business_type"],
                target_window=to_window,
            )
            conn.execute("UPDATE windows SET current_ticket = NULL WHERE window = ?", (window,))
            waiting = self._waiting_for(conn, win, now.date().isoformat())
            event = self._event(
                "transfer",
                now,
                ticket=row["number"],
                window=window,
                business_type=row["business_type"],
                to_business_type=to_business_type,
                to_window=to_window,
                waiting=waiting,
            )
            ticket = self._ticket(
                conn.execute("SELECT * FROM tickets WHERE id = ?", (row["id"],)).fetchone()
            )
            return QueueResult(
                event=event,
                ticket=ticket,
                waiting=waiting,
                led=LedPayload(window=window, ticket=None, waiting=waiting),
            )

        return await self._run(op)

    async def call_back(self, window: str, number: str) -> QueueResult:
        """回呼: call a held or skipped ticket of today to this window."""

        def op(conn: sqlite3.Connection, now: datetime) -> QueueResult:
            win = self._window(conn, window)
            if win["paused"]:
                raise WindowPaused(f"window {window} is paused; resume it first")
            row = conn.execute(
                "SELECT * FROM tickets WHERE day = ? AND number = ? "
                "AND status IN ('held', 'skipped')",
                (now.date().isoformat(), number),
            ).fetchone()
            if row is None:
                raise TicketNotFound(f"ticket {number} is not held or skipped today")
            finished = self._finish_current(conn, win, now)
            self._set_status(
                conn, row["id"], TicketStatus.CALLED, now, window=window, calls=row["calls"] + 1
            )
            conn.execute(
                "UPDATE windows SET current_ticket = ? WHERE window = ?", (row["id"], window)
            )
            return self._presented(
                conn,
                "call_back",
                win,
                row["id"],
                now,
                finished=finished,
                previous_status=row["status"],
            )

        return await self._run(op)

    async def pause(self, window: str, *, paused: bool = True) -> QueueResult:
        """暂停 (or resume with ``paused=False``): a paused window calls nobody."""

        def op(conn: sqlite3.Connection, now: datetime) -> QueueResult:
            win = self._window(conn, window)
            conn.execute("UPDATE windows SET paused = ? WHERE window = ?", (int(paused), window))
            waiting = self._waiting_for(conn, win, now.date().isoformat())
            event = self._event(
                "pause" if paused else "resume", now, window=window, waiting=waiting
            )
            return QueueResult(
                event=event,
                waiting=waiting,
                led=LedPayload(window=window, ticket=None, waiting=waiting),
            )

        return await self._run(op)

    async def resume(self, window: str) -> QueueResult:
        """Resume a paused window."""
        return await self.pause(window, paused=False)

    async def evaluate(self, window: str) -> QueueResult:
        """评价: ask the citizen at the window to rate; the agent forwards it to the pad."""

        def op(conn: sqlite3.Connection, now: datetime) -> QueueResult:
            win = self._window(conn, window)
            row = self._current(conn, win)
            event = self._event(
                "evaluate",
                now,
                ticket=row["number"],
                business_type=row["business_type"],
                window=window,
            )
            return QueueResult(event=event, ticket=self._ticket(row))

        return await self._run(op)

    async def close_day(self) -> QueueResult:
        """Batch 弃号: every ticket of an earlier day still waiting or held is skipped."""

        def op(conn: sqlite3.Connection, now: datetime) -> QueueResult:
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
            return QueueResult(event=self._event("close_day", now, skipped=count))

        return await self._run(op)

    # --- reads ---------------------------------------------------------------------

    async def ticket(self, number: str) -> Ticket | None:
        """Today's ticket with that number, if any."""
        store = self._require()
        day = self._now().date().isoformat()

        def read() -> Ticket | None:
            with store.transaction() as conn:
                row = conn.execute(
                    "SELECT * FROM tickets WHERE day = ? AND number = ?", (day, number)
                ).fetchone()
            return None if row is None else self._ticket(row)

        return await asyncio.to_thread(read)

    async def waiting(self, window: str) -> int:
        """How many tickets today this window could call next."""
        store = self._require()
        day = self._now().date().isoformat()

        def read() -> int:
            with store.transaction() as conn:
                return self._waiting_for(conn, self._window(conn, window), day)

        return await asyncio.to_thread(read)

    async def snapshot(self) -> QueueSnapshot:
        """Today's waiting counts per business type and every window's state, read-only.

        Read in one transaction, so counts and windows agree with each other; changes
        nothing and records no event.
        """
        store = self._require()
        day = self._now().date().isoformat()

        def read() -> QueueSnapshot:
            with store.transaction() as conn:
                counts = dict.fromkeys(self.types, 0)
                for row in conn.execute(
                    "SELECT business_type, COUNT(*) AS n FROM tickets "
                    "WHERE day = ? AND status = 'waiting' GROUP BY business_type",
                    (day,),
                ).fetchall():
                    counts[str(row["business_type"])] = int(row["n"])
                windows = tuple(
                    WindowSnapshot(
                        window=str(row["window"]),
                        business_types=tuple(str(c) for c in json.loads(row["business_types"])),
                        paused=bool(row["paused"]),
                        current_ticket=row["number"],
                        waiting=self._waiting_for(conn, row, day),
                    )
                    for row in conn.execute(
                        "SELECT w.window, w.business_types, w.paused, t.number FROM windows w "
                        "LEFT JOIN tickets t ON t.id = w.current_ticket ORDER BY w.window"
                    ).fetchall()
                )
            return QueueSnapshot(day=day, waiting=counts, windows=windows)

        return await asyncio.to_thread(read)

    async def events_after(
        self, seq: int = 0, *, limit: int = 500
    ) -> list[tuple[int, dict[str, Any]]]:
        """Event records with sequence numbers above ``seq``, for the outbox."""
        store = self._require()
        return await asyncio.to_thread(store.events_after, seq, limit=limit)

    def _require(self) -> QueueStore:
        if self._store is None:
            raise QueueError("the queue engine is not open")
        return self._store
