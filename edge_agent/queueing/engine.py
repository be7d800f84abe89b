"""The queue engine: the one public facade over the outlet's queue.

``QueueEngine`` checks arguments and runs each operation (``operations``,
``window_setup``) in one SQLite transaction in a worker thread, one at a time, writing
its event record in that same transaction; ``events_after`` feeds the outbox. Rules:
docs/queue.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from zoneinfo import ZoneInfo

from edge_agent.queueing import appointments, operations, rows, window_setup
from edge_agent.queueing.announce import DEFAULT_TEMPLATE
from edge_agent.queueing.errors import QueueError, UnknownBusinessType
from edge_agent.queueing.models import (
    BusinessType,
    QueueResult,
    QueueSnapshot,
    Ticket,
    TicketStatus,
    WindowConfig,
    WindowSnapshot,
)
from edge_agent.queueing.store import QueueStore

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Op = Callable[[sqlite3.Connection, datetime], QueueResult]


class QueueEngine:
    """The outlet's queue, persisted in ``data_dir / "queue.sqlite3"``.

    Use as an async context manager. ``clock`` returns an aware ``datetime`` (tests pass
    a fake one); ``timezone`` decides which local day a ticket belongs to;
    ``appointment_grace`` is how long after its slot's end a booking can still check in.
    """

    def __init__(
        self,
        data_dir: Path,
        business_types: Sequence[BusinessType],
        *,
        timezone: str = "Asia/Shanghai",
        template: str = DEFAULT_TEMPLATE,
        clock: Clock | None = None,
        appointment_grace: timedelta = timedelta(minutes=15),
    ) -> None:
        prefixes = [b.prefix for b in business_types]
        if len(set(prefixes)) != len(prefixes) or not business_types:
            raise ValueError("business types must be non-empty with distinct prefixes")
        self.types = {b.code: b for b in business_types}
        self.tz = ZoneInfo(timezone)
        self.template = template
        self.appointment_grace = appointment_grace
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

    def _require(self) -> QueueStore:
        if self._store is None:
            raise QueueError("the queue engine is not open")
        return self._store

    def _type(self, code: str) -> BusinessType:
        try:
            return self.types[code]
        except KeyError:
            raise UnknownBusinessType(f"no business type {code!r} is configured") from None

    async def _run(self, op: Op) -> QueueResult:
        store = self._require()
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

    # --- configuration -------------------------------------------------------------

    async def configure_window(
        self, window: str, business_types: Iterable[str], *, paused: bool = False
    ) -> QueueResult:
        """Create or change a window and the business types it serves."""
        codes = list(business_types)
        for code in codes:
            self._type(code)
        return await self._run(
            lambda conn, now: window_setup.configure(conn, now, window, codes, paused=paused)
        )

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
            with store.transaction() as conn:
                events = window_setup.apply(conn, wanted, now)
                for event in events:
                    store.add_event(conn, event)
            return events

        async with self._lock:
            events = await asyncio.to_thread(work)
        for event in events:
            logger.info("queue %s window %s", event["kind"], event["window"])
        return events

    # --- operations ----------------------------------------------------------------

    async def issue(self, business_type: str) -> QueueResult:
        """Issue the next ticket of a business type today; ``waiting`` = people ahead."""
        btype = self._type(business_type)
        return await self._run(lambda conn, now: operations.issue(conn, now, btype))

    async def load_appointments(self, bookings: Sequence[appointments.Appointment]) -> int:
        """Add or update bookings (all or none); returns how many were new."""
        for booking in bookings:
            self._type(booking.business_type)  # UnknownBusinessType before anything changes
        store = self._require()

        def work() -> int:
            with store.transaction() as conn:
                return appointments.load(conn, list(bookings))

        async with self._lock:
            return await asyncio.to_thread(work)

    async def check_in(self, reference: str) -> QueueResult:
        """Check an appointment in: its ticket, with its priority (``AppointmentError``)."""
        return await self._run(
            lambda conn, now: appointments.check_in(
                conn, now, reference, self.types, self.appointment_grace
            )
        )

    async def call(self, window: str) -> QueueResult:
        """Finish the window's current ticket and call the next one (``ticket`` None if none)."""
        return await self._run(lambda conn, now: operations.call(conn, now, window, self.template))

    async def recall(self, window: str) -> QueueResult:
        """Announce the current ticket again (重呼)."""
        return await self._run(
            lambda conn, now: operations.recall(conn, now, window, self.template)
        )

    async def _retire_current(self, window: str, kind: str, status: TicketStatus) -> QueueResult:
        return await self._run(
            lambda conn, now: operations.retire_current(conn, now, window, kind, status)
        )

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
        return await self._run(
            lambda conn, now: operations.transfer(conn, now, window, to_business_type, to_window)
        )

    async def call_back(self, window: str, number: str) -> QueueResult:
        """回呼: call a held or skipped ticket of today to this window."""
        return await self._run(
            lambda conn, now: operations.call_back(conn, now, window, number, self.template)
        )

    async def pause(self, window: str, *, paused: bool = True) -> QueueResult:
        """暂停 (or resume with ``paused=False``): a paused window calls nobody."""
        return await self._run(lambda conn, now: operations.pause(conn, now, window, paused))

    async def resume(self, window: str) -> QueueResult:
        """Resume a paused window."""
        return await self.pause(window, paused=False)

    async def evaluate(self, window: str) -> QueueResult:
        """评价: ask the citizen at the window to rate; the agent forwards it to the pad."""
        return await self._run(lambda conn, now: operations.evaluate(conn, now, window))

    async def close_day(self) -> QueueResult:
        """Batch 弃号: every ticket of an earlier day still waiting, held or called is skipped."""
        return await self._run(operations.close_day)

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
            return None if row is None else rows.ticket(row)

        return await asyncio.to_thread(read)

    async def waiting(self, window: str) -> int:
        """How many tickets today this window could call next."""
        store = self._require()
        day = self._now().date().isoformat()

        def read() -> int:
            with store.transaction() as conn:
                return rows.waiting_for(conn, rows.window(conn, window), day)

        return await asyncio.to_thread(read)

    async def snapshot(self) -> QueueSnapshot:
        """Today's waiting counts, every window's state and the day's bookings, read-only.

        Read in one transaction, so counts and windows agree with each other; changes
        nothing and records no event.
        """
        store = self._require()
        now = self._now()
        day = now.date().isoformat()

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
                        waiting=rows.waiting_for(conn, row, day),
                    )
                    for row in conn.execute(
                        "SELECT w.window, w.business_types, w.paused, t.number FROM windows w "
                        "LEFT JOIN tickets t ON t.id = w.current_ticket ORDER BY w.window"
                    ).fetchall()
                )
                booked = appointments.counts(conn, now, self.appointment_grace)
            return QueueSnapshot(day=day, waiting=counts, windows=windows, appointments=booked)

        return await asyncio.to_thread(read)

    async def events_after(
        self, seq: int = 0, *, limit: int = 500
    ) -> list[tuple[int, dict[str, Any]]]:
        """Event records with sequence numbers above ``seq``, for the outbox."""
        store = self._require()
        return await asyncio.to_thread(store.events_after, seq, limit=limit)
