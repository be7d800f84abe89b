"""What the local API knows about the transactions it accepted: a durable status table.

The outbox knows what is still waiting (``read``) and what was dead-lettered; once an
entry is acked it is gone from the outbox. The MQTT session publishes what happened
next on ``runtime.transactions``: ``transaction.acked`` /
``transaction.result`` events whose data hold ``tx_id`` and, for a result,
``outcome`` (``delivered`` / ``rejected``), ``case_number`` and ``reason``. This table
remembers those per ``tx_id`` in ``DATA_DIR/local_api.sqlite3`` (``state.py``; pruned
after 30 days), so ``GET /v1/transactions/{tx_id}`` answers after the outbox let go
of the entry and after an agent restart. When the table has nothing (a transaction
accepted before this table existed, or pruned), the outbox is asked: ``waiting`` if
still in it, ``rejected`` if dead-lettered, else ``unknown``.

A failing state database never fails an accepted transaction: the failure is logged
and the answer falls back to the outbox.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from edge_agent.discovery import Subscription
from edge_agent.local_api.state import LocalStateError, LocalStateStore, StoredStatus
from edge_agent.outbox import Outbox

__all__ = ["TransactionStatus", "TransactionTracker"]

log = logging.getLogger(__name__)

# Events applied in one write of the state database at most.
_MAX_EVENTS_PER_WRITE: Final = 256
# In a burst of events, how long to gather more before writing (once per write).
_BURST_GATHER_S: Final = 0.02


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionStatus:
    """One transaction as the clerk app sees it; ``status`` is the stage reached."""

    tx_id: str
    status: str  # waiting | acked | delivered | rejected | unknown
    tx_kind: str | None = None
    case_number: str | None = None
    reason: str | None = None
    attempts: int | None = None
    updated: float = 0.0


class TransactionTracker:
    """The status table; ``run`` consumes transaction events until cancelled."""

    def __init__(self, outbox: Outbox, *, state: LocalStateStore) -> None:
        self.outbox = outbox
        self.state = state

    async def accepted(self, tx_id: str, *, tx_kind: str) -> None:
        """Remember a transaction the API just put in the outbox (``waiting``)."""
        if await self._load(tx_id) is None:
            await self._save(TransactionStatus(tx_id=tx_id, status="waiting", tx_kind=tx_kind))

    async def on_event(self, name: str, data: dict[str, Any]) -> None:
        """Apply one transaction event (``transaction.acked`` / ``transaction.result``)."""
        await self.on_events([(name, data)])

    async def on_events(self, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Apply events in order, in one write of the state database."""
        changes = []
        for name, data in events:
            tx_id = data.get("tx_id")
            if isinstance(tx_id, str) and tx_id:
                changes.append((tx_id, functools.partial(_change, name, data, tx_id)))
        if not changes:
            return
        try:
            await self.state.update_statuses(changes)
        except LocalStateError as exc:
            log.warning("%d transaction statuses not stored: %s", len(changes), exc)

    async def status(self, tx_id: str) -> TransactionStatus:
        """The best knowledge: a result or ack seen, else the outbox's, else ``unknown``."""
        known = await self._load(tx_id)
        if known is not None and known.status in ("delivered", "rejected", "acked"):
            return known
        entry = await self.outbox.read(tx_id)
        if entry is not None:
            return TransactionStatus(
                tx_id=tx_id,
                status="rejected" if entry.meta.dead_reason else "waiting",
                tx_kind=entry.meta.tx_kind,
                attempts=entry.meta.attempts,
                reason=entry.meta.dead_reason,
            )
        for dead in await self.outbox.dead_letters(limit=1000):
            if dead.tx_id == tx_id:
                return TransactionStatus(
                    tx_id=tx_id, status="rejected", tx_kind=dead.tx_kind, reason=dead.reason
                )
        if known is not None:
            # Accepted here, no longer pending, no result yet: the server acked it.
            return replace(known, status="acked")
        return TransactionStatus(tx_id=tx_id, status="unknown")

    async def run(self, subscription: Subscription, *, poll_s: float = 30.0) -> None:
        """Consume ``runtime.transactions`` events until cancelled (waits bounded by ``poll_s``)."""
        while True:
            try:
                event = await subscription.get(timeout_s=poll_s)
            except TimeoutError:
                continue
            # What queued meanwhile (acks of a draining backlog) goes in the same write;
            # in a burst, a short wait gathers more of it (a lone event is not held).
            events = [(event.name, dict(event.data))]
            _take_queued(subscription, events)
            if 1 < len(events) < _MAX_EVENTS_PER_WRITE:
                await asyncio.sleep(_BURST_GATHER_S)
                _take_queued(subscription, events)
            await self.on_events(events)

    async def _load(self, tx_id: str) -> TransactionStatus | None:
        try:
            row = await self.state.load_status(tx_id)
        except LocalStateError as exc:
            log.warning("transaction status of %s not readable: %s", tx_id, exc)
            return None
        return None if row is None else _from_row(row)

    async def _save(self, status: TransactionStatus) -> None:
        try:
            await self.state.save_status(_to_row(status))
        except LocalStateError as exc:
            log.warning("transaction status of %s not stored: %s", status.tx_id, exc)


def _text(value: object) -> str | None:
    return str(value)[:512] if value not in (None, "") else None


def _take_queued(subscription: Subscription, events: list[tuple[str, dict[str, Any]]]) -> None:
    while len(events) < _MAX_EVENTS_PER_WRITE:
        more = subscription.get_nowait()
        if more is None:
            return
        events.append((more.name, dict(more.data)))


def _change(
    name: str, data: dict[str, Any], tx_id: str, row: StoredStatus | None
) -> StoredStatus | None:
    old = _from_row(row) if row else TransactionStatus(tx_id=tx_id, status="unknown")
    new = _next_status(name, data, old)
    return None if new is None else _to_row(new)


def _next_status(
    name: str, data: dict[str, Any], old: TransactionStatus
) -> TransactionStatus | None:
    """What an event makes of a status; None when it changes nothing."""
    if name == "transaction.result":
        outcome = str(data.get("outcome") or data.get("status") or "delivered")
        return replace(
            old,
            status="rejected" if outcome == "rejected" else "delivered",
            case_number=_text(data.get("case_number")) or old.case_number,
            reason=_text(data.get("reason")),
        )
    if name in ("transaction.acked", "transaction.ack"):
        if old.status in ("delivered", "rejected"):
            return None  # a late ack never undoes a result
        ack = str(data.get("status", "accepted"))
        return replace(
            old,
            status="rejected" if ack == "rejected" else "acked",
            reason=_text(data.get("reason")),
        )
    return None


# The fields a status and its stored row share (the row adds when it was written).
_ROW_FIELDS: Final = ("tx_id", "status", "tx_kind", "case_number", "reason")


def _from_row(row: StoredStatus) -> TransactionStatus:
    return TransactionStatus(**{n: getattr(row, n) for n in _ROW_FIELDS}, updated=row.updated)


def _to_row(status: TransactionStatus) -> StoredStatus:
    return StoredStatus(**{n: getattr(status, n) for n in _ROW_FIELDS}, updated=time.time())
