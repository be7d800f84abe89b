"""Ticket priority in the queue engine: appointments first, and an older database upgraded."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from edge_agent.queueing import Appointment, BusinessType, QueueEngine

TYPES = [BusinessType(code="social", prefix="A", name="社保医保")]
TZ = ZoneInfo("Asia/Shanghai")


def test_a_database_without_priorities_is_upgraded_and_keeps_its_tickets(tmp_path: Path) -> None:
    async def main() -> None:
        async with QueueEngine(tmp_path, TYPES) as queue:
            await queue.configure_window("3", ["social"])
            await queue.issue("social")
        # The queue database as agents before appointments left it: no priority column.
        with sqlite3.connect(tmp_path / "queue.sqlite3") as conn:
            conn.execute("ALTER TABLE tickets DROP COLUMN priority")
        async with QueueEngine(tmp_path, TYPES) as queue:
            today = datetime.now(TZ).date()
            await queue.load_appointments(
                [Appointment(reference="YY-1", day=today, business_type="social", priority=2)]
            )
            booked = await queue.check_in("YY-1")
            assert booked.ticket is not None
            assert booked.ticket.number == "A002"
            assert booked.event["priority"] == 2
            first = await queue.call("3")
            assert first.ticket is not None
            assert first.ticket.number == "A002"
            second = await queue.call("3")
            assert second.ticket is not None
            assert second.ticket.number == "A001"  # the old ticket was kept, walk-in priority

    asyncio.run(main())
