"""The ingest's worker thread: take a batch, apply it in memory, write, acknowledge.

Woken by the first message, it waits ``ingest_batch_window_s`` and takes everything
queued (up to ``ingest_batch_max``). A message that fails, any way at all, is counted
and skipped: only validated in-memory state is written, so it cannot roll back others.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from fleet_server.ingest.presence import PresenceTracker
from fleet_server.ingest.presence_store import PresenceStore
from fleet_server.ingest.publisher import Publisher
from fleet_server.ingest.queue import Batch, BrokerLost, BrokerUp, IngestQueue, Received, outlet_of
from fleet_server.ingest.revocation import RevocationGate
from fleet_server.ingest.share_group import ShareGroup
from fleet_server.ingest.stats import IngestStats, RateLimitedLog
from fleet_server.ingest.transactions import TransactionDesk
from fleet_server.settings import Settings
from govedge_wire import (
    Birth,
    CommandResult,
    ConfigReport,
    Death,
    Event,
    Telemetry,
    Transaction,
    UpdateStatus,
    WireError,
    decode,
)

logger = logging.getLogger(__name__)

Uplink = (
    Birth | Death | Telemetry | Event | Transaction | CommandResult | ConfigReport | UpdateStatus
)
_UPLINK_TYPES = (
    Birth, Death, Telemetry, Event, Transaction, CommandResult, ConfigReport, UpdateStatus
)  # fmt: skip
_GET_TIMEOUT_S = 1.0
# Shared mode: how long a message of a session not yet stored by any worker waits for
# the birth to be committed (one batch window of the other worker, plus slack).
_SHARED_DEFER_S = 2.0
_DEFER_RETRY_S = 0.1


class IngestObserver(Protocol):
    """Fleet health as the worker sees it: ``observe`` per accepted message, ``flush`` per batch."""

    def observe(self, message: object, *, received_at: datetime) -> None:
        """Take one accepted message (in memory)."""

    def flush(self, sessions: sessionmaker[Session]) -> None:
        """Write what changed."""


class ConfigReports(Protocol):
    """What agents say of their config (births and ``reported``), handed to the config
    package above the ingest: ``take`` per accepted message, ``flush`` per batch."""

    def take(self, message: Birth | ConfigReport, *, received_at: datetime) -> None:
        """Take one accepted birth or report (in memory)."""

    def flush(self, sessions: sessionmaker[Session]) -> None:
        """Write what the batch's births and reports changed; never raises."""


class UpdateReporting(Protocol):
    """Update reports (``up/updstatus``), handed to the campaigns package above the
    ingest: ``take`` per accepted message, ``flush`` per batch."""

    def take(self, message: UpdateStatus, *, received_at: datetime) -> None:
        """Take one accepted report (in memory)."""

    def flush(self, sessions: sessionmaker[Session]) -> None:
        """Write what the batch's reports changed; never raises."""


@dataclass(frozen=True, slots=True)
class _Deferred:
    """Shared mode: a decoded message waiting for its birth to reach the database."""

    item: Received
    message: Uplink
    until: float  # monotonic


@dataclass(frozen=True, slots=True, kw_only=True)
class Parts:
    """What the worker works with; built and owned by ``Ingest``."""

    settings: Settings
    sessions: sessionmaker[Session]
    stats: IngestStats
    queue: IngestQueue
    tracker: PresenceTracker
    presence: PresenceStore
    group: ShareGroup
    publisher: Publisher
    transactions: TransactionDesk
    revocation: RevocationGate
    observer: IngestObserver | None
    reports: ConfigReports | None = None
    updates: UpdateReporting | None = None


class Worker:
    """Runs in the ingest's one worker thread (``run``); ``process`` takes one batch."""

    def __init__(self, parts: Parts, *, abort: threading.Event) -> None:
        self._p = parts
        self._settings = parts.settings
        self._shared = bool(parts.settings.mqtt_share_group)
        self._stats = parts.stats
        self._tracker = parts.tracker
        self._abort = abort
        self._log = RateLimitedLog(logger)
        # Shared mode only: messages waiting for a birth, and outlets read this batch.
        self._deferred: list[_Deferred] = []
        self._refreshed: set[str] = set()

    def run(self) -> None:
        """Take and process batches until the stop sentinel (or the abort event)."""
        p = self._p
        while not self._abort.is_set():
            batch, stop = p.queue.take(
                wait_s=_DEFER_RETRY_S if self._deferred else _GET_TIMEOUT_S,
                window_s=self._settings.ingest_batch_window_s,
                limit=self._settings.ingest_batch_max,
                abort=self._abort,
            )
            if p.revocation.revoked.due():
                p.revocation.refresh()
            p.revocation.offline_new(self._tracker)
            if self._shared and time.monotonic() >= p.group.next_beat:
                try:
                    p.group.heartbeat()
                except Exception as exc:  # the worker must outlive any bug
                    self._log.exception("heartbeat_bug", "worker heartbeat failed", exc=exc)
            try:
                self.process(batch)
            except Exception as exc:  # the worker must outlive any bug
                self._stats.rejected("internal_error")
                self._log.exception("worker", "ingest batch failed", exc=exc)
            if stop:
                return

    def process(self, batch: Batch) -> None:
        """Apply one batch, then write presence, health, transactions and refusals."""
        p = self._p
        self._refreshed.clear()
        # Decoded first, so a share group reads the stored rows the batch needs at once.
        work: list[tuple[Received | BrokerUp | BrokerLost, Uplink | None, float | None]] = []
        if self._deferred:
            waiting, self._deferred = self._deferred, []
            work.extend(
                (deferred.item, deferred.message, deferred.until)
                for deferred in waiting
                if not p.revocation.refuse(deferred.item.topic)
            )
        for item in batch:
            if isinstance(item, BrokerUp | BrokerLost):
                work.append((item, None, None))
            else:
                message = self._decode(item)
                if message is not None:
                    work.append((item, message, None))
        if self._shared:
            self._prefetch([message for _, message, _ in work if message is not None])
        for item, message, until in work:
            if isinstance(item, BrokerUp):
                if self._shared:
                    p.group.connected = True
                    p.group.heartbeat()
            elif isinstance(item, BrokerLost):
                if self._shared:
                    p.group.broker_lost(item.at)
                    continue
                count = self._tracker.mark_all_stale(at=item.at)
                if count:
                    logger.info("broker connection lost: %d online outlets now stale", count)
            elif message is not None:
                self._apply(item, message, until=until)
        p.presence.flush()
        # Transactions right after presence (their outlet rows exist by then): an agent
        # and its clerk wait for the ack, and the delivery for the stored row, while the
        # device health, config and update reports wait for nobody.
        p.transactions.store_and_ack()
        if p.observer is not None:
            p.observer.flush(p.sessions)
        if p.reports is not None:
            p.reports.flush(p.sessions)
        if p.updates is not None:
            p.updates.flush(p.sessions)
        p.revocation.record()

    def _decode(self, item: Received) -> Uplink | None:
        """The uplink message in ``item``, or None (refused, malformed: counted)."""
        if self._p.revocation.refuse(item.topic):
            return None
        try:
            message = decode(item.topic, item.payload)
        except WireError as exc:
            self._stats.rejected(exc.reason)
            self._log.warning(
                exc.reason,
                "rejected a message from outlet %s: %s (%d bytes)",
                outlet_of(item.topic),
                exc.reason,
                len(item.payload),
            )
            return None
        except Exception as exc:  # decoding must never stop the ingest
            self._stats.rejected("internal_error")
            self._log.exception(
                "internal_error",
                "could not decode a message from %s",
                outlet_of(item.topic),
                exc=exc,
            )
            return None
        if not isinstance(message, _UPLINK_TYPES):
            self._stats.rejected("unexpected_kind")
            return None
        return message

    def _prefetch(self, messages: list[Uplink]) -> None:
        """Shared mode: read in one query the stored rows of every outlet whose session
        the batch names before this worker saw it born (after a broker restart, every
        outlet's first message at every worker: one query per outlet was 10,000).

        A session born in this same batch needs no read: the birth is applied first.
        """
        born: dict[str, int] = {}
        for message in messages:
            if isinstance(message, Birth):
                born[message.outlet_id] = max(born.get(message.outlet_id, 0), message.session)
        wanted = sorted(
            {
                message.outlet_id
                for message in messages
                if message.outlet_id not in self._refreshed
                and message.session > born.get(message.outlet_id, -1)
                and self._tracker.needs_refresh(message)
            }
        )
        if wanted:
            self._refreshed.update(wanted)
            self._p.presence.reload_many(wanted)

    def _apply(self, item: Received, message: Uplink, *, until: float | None) -> None:
        stats = self._stats
        outlet_id = message.outlet_id
        if self._tracker.needs_refresh(message) and not self._refresh(message, item, until):
            return
        try:
            outcome = self._tracker.apply(
                message, received_at=item.received_at, now=time.monotonic()
            )
        except Exception as exc:  # one message's failure must not stop the batch
            stats.rejected("internal_error")
            self._log.exception(
                "internal_error", "could not apply a message from %s", outlet_id, exc=exc
            )
            return
        if outcome.ignored is not None:
            stats.rejected(outcome.ignored)
            self._log.warning(
                f"ignored:{outcome.ignored}",
                "ignored a %s from outlet %s: %s",
                message.kind,
                outlet_id,
                outcome.ignored,
            )
        else:
            stats.accepted()
            if self._p.observer is not None:
                self._p.observer.observe(message, received_at=item.received_at)
            if self._p.reports is not None and isinstance(message, Birth | ConfigReport):
                self._p.reports.take(message, received_at=item.received_at)
            if self._p.updates is not None and isinstance(message, UpdateStatus):
                self._p.updates.take(message, received_at=item.received_at)
        for note in outcome.notes:
            stats.noted(note)
        if outcome.ignored is None and isinstance(message, Transaction):
            self._p.transactions.check(message, received_at=item.received_at)
        if outcome.rebirth_reason is not None:
            stats.rebirth(sent=outcome.rebirth)
            if outcome.rebirth:
                self._p.publisher.rebirth(
                    message.outlet_id,
                    reason=outcome.rebirth_reason,
                    known_session=outcome.known_session,
                    stale_session=message.session,
                )

    def _refresh(self, message: Uplink, item: Received, until: float | None) -> bool:
        """Shared mode: read the outlet's stored row; False if the message must wait.

        The row is read at most once per outlet per batch; a message whose session is
        still unknown afterwards waits (``_SHARED_DEFER_S``) and is then applied as it
        is, to be refused ``no_birth``/``session_mismatch``/``late_will`` as usual.
        """
        outlet_id = message.outlet_id
        if outlet_id not in self._refreshed:
            self._refreshed.add(outlet_id)
            self._p.presence.reload(outlet_id)
            if not self._tracker.needs_refresh(message):
                return True
        now = time.monotonic()
        deadline = now + _SHARED_DEFER_S if until is None else until
        if now < deadline and not self._p.group.stopping:
            if until is None:
                self._stats.noted("presence_waited")
            self._deferred.append(_Deferred(item=item, message=message, until=deadline))
            return False
        return True
