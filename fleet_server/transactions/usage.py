"""Each outlet's stored bytes per day, bounded, so one stolen outlet key cannot fill the disk.

Every transaction the inbox stores counts against its outlet's day (in
``GOVEDGE_OUTLET_TIMEZONE``): a submission, evaluation or queue event by its body as
compact JSON, a material chunk by its data. A duplicate or a rejected item stores
nothing and counts nothing (over the bound a resent chunk is refused too: the outlet
stops sending either way). Once an outlet's day would go over
``GOVEDGE_OUTLET_DAILY_BYTES``, its items are refused (``outlet_daily_bytes``, counted
per day in ``refused``) until the next day; other outlets are not touched. The alert
rule ``outlet_daily_bytes`` is open while an outlet has refusals today.

The counts live in ``outlet_usage`` (one row per outlet and day) and are written in the
ingest batch's own transaction, so they agree with what was stored. Two ingest workers
of a share group may each admit one batch over the bound before they see each other's
count (the increments themselves are never lost): the bound is exact to a batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Date, Integer, String, Table, bindparam, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from fleet_server.models import Base
from fleet_server.transactions.bodies import ParsedBody
from govedge_wire import Transaction
from govedge_wire.transactions import MaterialChunkBody

__all__ = [
    "DEFAULT_OUTLET_DAILY_BYTES",
    "QUOTA_CODE",
    "DailyUsage",
    "OutletUsage",
    "refusals_on",
    "stored_size",
]

DEFAULT_OUTLET_DAILY_BYTES: Final = 1024 * 1024 * 1024
QUOTA_CODE: Final = "outlet_daily_bytes"


class OutletUsage(Base):
    """What one outlet stored on one day (its time zone), and how much was refused."""

    __tablename__ = "outlet_usage"

    outlet_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    refused: Mapped[int] = mapped_column(Integer, default=0)
    refused_bytes: Mapped[int] = mapped_column(BigInteger, default=0)


def stored_size(message: Transaction, body: ParsedBody) -> int:
    """The bytes an item adds to the database (its content, not the row overhead)."""
    if isinstance(body, MaterialChunkBody):
        return len(body.data)
    text = json.dumps(dict(message.body), ensure_ascii=False, separators=(",", ":"))
    return len(text.encode())


# Built once: the ingest adds to an outlet's day for nearly every transaction, and an
# ORM UPDATE assembled per call cost more than the rest of storing the transaction.
_usage: Table = OutletUsage.__table__  # type: ignore[assignment]
_ADD: Final = (
    update(_usage)
    .where(_usage.c.outlet_id == bindparam("u_outlet"), _usage.c.day == bindparam("u_day"))
    .values(
        stored_bytes=_usage.c.stored_bytes + bindparam("u_added"),
        refused=_usage.c.refused + bindparam("u_refused"),
        refused_bytes=_usage.c.refused_bytes + bindparam("u_refused_bytes"),
    )
)


@dataclass(slots=True)
class _Day:
    known: int
    exists: bool = False  # the day's row was there when the batch read it
    added: int = 0
    refused: int = 0
    refused_bytes: int = 0


@dataclass(slots=True)
class DailyUsage:
    """The day's counts of the outlets in one batch: ``admit`` each item, then ``save``."""

    limit: int
    day: date
    days: dict[str, _Day] = field(default_factory=dict)

    @classmethod
    def load(
        cls, session: Session, outlet_ids: set[str], *, limit: int, now: datetime, zone: ZoneInfo
    ) -> DailyUsage:
        """Read today's counts of ``outlet_ids``."""
        usage = cls(limit=limit, day=now.astimezone(zone).date())
        if outlet_ids:
            for row in session.execute(
                select(OutletUsage.outlet_id, OutletUsage.stored_bytes).where(
                    OutletUsage.outlet_id.in_(outlet_ids), OutletUsage.day == usage.day
                )
            ):
                usage.days[row.outlet_id] = _Day(known=int(row.stored_bytes), exists=True)
        return usage

    def _of(self, outlet_id: str) -> _Day:
        found = self.days.get(outlet_id)
        if found is None:
            found = self.days[outlet_id] = _Day(known=0)
        return found

    def fits(self, outlet_id: str, size: int) -> bool:
        """Whether ``size`` more fits today; a refusal is counted."""
        day = self._of(outlet_id)
        if day.known + day.added + size > self.limit:
            day.refused += 1
            day.refused_bytes += size
            return False
        return True

    def admit(self, outlet_id: str, size: int) -> bool:
        """Count ``size`` for ``outlet_id`` if it fits today's bound; else count a refusal."""
        day = self._of(outlet_id)
        if day.known + day.added + size > self.limit:
            day.refused += 1
            day.refused_bytes += size
            return False
        day.added += size
        return True

    def reason(self) -> str:
        """The refusal's reason (the ack's ``reason``)."""
        return f"{QUOTA_CODE}: the outlet stored over {self.limit} bytes today; try tomorrow"

    def save(self, session: Session) -> None:
        """Add this batch's counts (increments, so concurrent workers lose none)."""
        increments = []
        for outlet_id, day in self.days.items():
            if not (day.added or day.refused):
                continue
            if day.exists:
                increments.append(
                    {
                        "u_outlet": outlet_id, "u_day": self.day, "u_added": day.added,
                        "u_refused": day.refused, "u_refused_bytes": day.refused_bytes,
                    }
                )  # fmt: skip
            else:
                # A concurrent first insert makes the commit fail on the key; the ingest
                # then stores item by item, and that batch's read finds the row.
                session.add(
                    OutletUsage(
                        outlet_id=outlet_id, day=self.day, stored_bytes=day.added,
                        refused=day.refused, refused_bytes=day.refused_bytes,
                    )
                )  # fmt: skip
        if increments:
            session.connection().execute(_ADD, increments)
        session.flush()


def refusals_on(session: Session, day: date) -> dict[str, tuple[int, int]]:
    """Outlets with refusals on ``day``: (refused items, stored bytes)."""
    return {
        row.outlet_id: (int(row.refused), int(row.stored_bytes))
        for row in session.execute(
            select(OutletUsage.outlet_id, OutletUsage.refused, OutletUsage.stored_bytes).where(
                OutletUsage.day == day, OutletUsage.refused > 0
            )
        )
    }
