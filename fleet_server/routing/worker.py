"""The delivery worker: a thread owned by the app lifespan that drains the inbox upstream.

Each round routes due rows to their targets, skips targets whose breaker is open or whose
pool share is used, and hands the rest to a thread pool. A second thread commits the
pool's outcomes a batch at a time and publishes the results owed to the outlets
(docs/transactions.md, "Routing").

Why two threads: the round loop was the bottleneck under load. It waited out the
broker's PUBACKs for the results and the database lock for each outcome while the pool
sat idle, and the clerk's submissions queued behind it (seconds at 50 a second while a
large fleet's telemetry flowed). One writer for the outcomes also takes the SQLite write
lock once per batch instead of once per delivery.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, defer, sessionmaker, undefer

from fleet_server.models import InboxEntry
from fleet_server.piivault import VaultError
from fleet_server.routing import store
from fleet_server.routing.breaker import BreakerState, CircuitBreaker
from fleet_server.routing.http_adapter import (
    Attachment,
    AttachmentError,
    DeliveryResult,
    HttpJsonAdapter,
)
from fleet_server.routing.routes import CatalogueRoutes, RoutedItem
from fleet_server.routing.targets import TargetsConfig
from fleet_server.transactions.materials import (
    MaterialPart,
    MaterialRejected,
    iter_material,
    materials_for_delivery,
)
from govedge_wire import TransactionResult

__all__ = ["DeliveryWorker", "ResultPublisher"]

logger = logging.getLogger(__name__)

# Publishes a batch of results; one flag per result: the broker has it.
ResultPublisher = Callable[[Sequence[TransactionResult]], Sequence[bool]]
_RESULT_BATCH: Final = 200
_STOP_TIMEOUT_S: Final = 10.0
# Rounds an outcome is offered to a failing database before it is let go: the row's
# lease then runs out and it is delivered again under the same Idempotency-Key, which
# the target answers as a duplicate with the case number it gave the first time.
_OUTCOME_TRIES: Final = 3
_UNREADABLE: Final = "the sealed body does not open for this row (moved, planted or its key gone)"


@dataclass(frozen=True, slots=True)
class _Outcome:
    """One delivery's answer, waiting for the outcome thread to commit it."""

    claimed: store.Claimed
    result: DeliveryResult
    at: datetime  # when the answer came (the attempt's time, the delivered_at)
    tries: int = 0


class DeliveryWorker:
    """``start()`` then ``stop()``; ``wake()`` after new rows are stored."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        targets: TargetsConfig,
        publish_results: ResultPublisher,
        poll_interval_s: float,
        concurrency: int,
        lease_s: float,
        seed: int | None = None,
    ) -> None:
        self._sessions = sessions
        self._targets = targets
        self._publish_results = publish_results
        self._poll_interval_s = poll_interval_s
        self._lease = timedelta(seconds=lease_s)
        self._concurrency = concurrency
        self._per_target = max(1, concurrency // 2)
        self._rng = random.Random(seed)  # jitter only; never security
        self._adapters = {t.name: HttpJsonAdapter(t) for t in targets.targets}
        self.breakers = {
            t.name: CircuitBreaker(threshold=t.breaker_threshold, cooldown_s=t.breaker_cooldown_s)
            for t in targets.targets
        }
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="delivery")
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()
        self._held: set[int] = set()
        self._futures: set[Future[None]] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-delivery", daemon=True)
        self._outcomes: list[_Outcome] = []  # under _lock
        self._outcome_ready = threading.Event()
        self._pool_done = threading.Event()
        self._outcome_thread = threading.Thread(
            target=self._run_outcomes, name="fleet-delivery-outcomes", daemon=True
        )
        self.counters: Counter[str] = Counter()
        self._routes = CatalogueRoutes()

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Start the round loop and the outcome thread."""
        self._thread.start()
        self._outcome_thread.start()
        logger.info("delivery worker started with targets %s", ", ".join(self._adapters))

    def wake(self) -> None:
        """New rows are due: look now instead of at the next poll."""
        self._wake.set()

    def stop(self, *, timeout: float = _STOP_TIMEOUT_S) -> None:
        """Stop taking work, let running deliveries finish (they record their outcome)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool_done.set()  # the outcome thread commits what the pool left, then ends
        self._outcome_ready.set()
        self._outcome_thread.join(timeout=timeout)
        for adapter in self._adapters.values():
            adapter.close()
        logger.info("delivery worker stopped")

    def breaker_states(self) -> dict[str, BreakerState]:
        """Each target's breaker state now."""
        return {name: breaker.state for name, breaker in self.breakers.items()}

    # -- loop ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=self._poll_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._dispatch()
            except SQLAlchemyError as exc:
                self.counters["db_error"] += 1
                logger.warning("delivery round failed on the database: %s", exc.__class__.__name__)
            except Exception:  # the worker must outlive any bug; it is logged with traceback
                self.counters["internal_error"] += 1
                logger.exception("delivery round failed")

    def _run_outcomes(self) -> None:
        """Commit the pool's outcomes, then publish the results owed; also every poll
        interval, for results owed by others (a dead letter, another process)."""
        while True:
            self._outcome_ready.wait(timeout=self._poll_interval_s)
            self._outcome_ready.clear()
            last = self._pool_done.is_set()
            try:
                self._record_outcomes()
                if not last:
                    self._send_results()
            except SQLAlchemyError as exc:
                self.counters["db_error"] += 1
                logger.warning(
                    "recording delivery outcomes failed on the database: %s",
                    exc.__class__.__name__,
                )
            except Exception:  # the thread must outlive any bug; it is logged with traceback
                self.counters["internal_error"] += 1
                logger.exception("recording delivery outcomes failed")
            if last:
                return

    def _free_slots(self) -> int:
        with self._lock:
            return self._concurrency - sum(self._in_flight.values())

    def _dispatch(self) -> None:
        free = self._free_slots()
        if free <= 0:
            return
        now = datetime.now(UTC)
        # Each planned row holds its breaker's permission (in half-open state the only
        # probe) until it is handed to the pool; a round that fails on the way gives the
        # rest back, or a half-open target would never be tried again.
        planned: list[tuple[InboxEntry, str, RoutedItem | None]] = []
        handed = 0
        try:
            with self._sessions() as session:
                self._routes.refresh(session)
                rows = store.due_rows(
                    session, now=now, limit=max(free * 4, 32), skip_targets=self._shut()
                )
                passed = self._plan(session, rows, free=free, now=now, into=planned)
                if passed:  # left out of the next rounds while their target cannot take them
                    store.note_targets(session, passed)
                if not planned:
                    session.commit()
                    return
                # One claim for the round: every UPDATE and COMMIT is a turn at the
                # interpreter lock that the ingest and the API wait for as well.
                taken = store.claim(
                    session, {entry.id: target for entry, target, _ in planned},
                    lease_until=now + self._lease,
                )  # fmt: skip
                if taken:  # their sealed bodies in one read, not one lazy load each
                    session.scalars(
                        select(InboxEntry)
                        .where(InboxEntry.id.in_(taken))
                        .options(undefer(InboxEntry.sealed_body))
                    ).all()
                for entry, target, item in planned:
                    if entry.id in taken:
                        self._submit(session, entry, target, item, now=now)
                    else:  # another process took it meanwhile
                        self.breakers[target].release()
                    handed += 1  # (a second release, after _submit failed, is harmless)
        finally:
            for _, target, _ in planned[handed:]:
                self.breakers[target].release()

    def _shut(self) -> set[str]:
        """The targets that cannot take a row now: their share of the pool is full or
        their breaker refuses. Their rows are left out of the round's window of due rows,
        which a slow or dead platform's backlog would otherwise fill for everyone."""
        with self._lock:
            full = {t for t, n in self._in_flight.items() if n >= self._per_target}
        return full | {name for name, breaker in self.breakers.items() if breaker.blocked()}

    def _plan(
        self,
        session: Session,
        rows: list[InboxEntry],
        *,
        free: int,
        now: datetime,
        into: list[tuple[InboxEntry, str, RoutedItem | None]],
    ) -> dict[str, list[int]]:
        """Add to ``into`` the rows to claim this round, each with its target: not held
        here, routable, within the target's share of the pool and allowed by its breaker.
        Returns the rows passed over for their target (its share full, its breaker
        refusing) whose row does not name that target yet, by target."""
        planned = into
        passed: dict[str, list[int]] = {}
        with self._lock:
            busy = Counter(self._in_flight)
            held = set(self._held)
        for entry in rows:
            if self._stop.is_set() or len(planned) >= free:
                break
            if entry.id in held:
                continue
            target, item, why = store.route(
                session, entry, targets=self._targets, routes=self._routes
            )
            if target is None:
                store.dead_letter(
                    session, entry, reason="no_route", detail=why, status_code=None, now=now,
                    notify=False,
                )  # fmt: skip
                session.commit()
                self.counters["no_route"] += 1
                logger.warning(
                    "transaction %s of %s has no route: %s", entry.tx_id, entry.outlet_id, why
                )
                continue
            full = busy[target] >= self._per_target
            if full or not self.breakers[target].allow():
                if not full:  # the breaker refused
                    self.counters["breaker_skipped"] += 1
                if entry.target != target:
                    passed.setdefault(target, []).append(entry.id)
                continue
            busy[target] += 1
            planned.append((entry, target, item))
        return passed

    def _submit(
        self,
        session: Session,
        entry: InboxEntry,
        target: str,
        item: RoutedItem | None,
        *,
        now: datetime,
    ) -> None:
        """Build the claimed row's document and hand it to the pool (or dead-letter it)."""
        breaker = self.breakers[target]
        try:
            materials = (
                materials_for_delivery(session, entry) if entry.tx_kind == "submission" else []
            )
            document = store.document_for(entry, item, materials=[m.describe() for m in materials])
        except VaultError:  # the body does not open for this row: moved, planted or key gone
            breaker.release()
            entry.target = target  # as claimed (the claim's UPDATE left the object as read)
            store.dead_letter(
                session, entry, reason="unreadable", detail=_UNREADABLE, status_code=None,
                now=now, notify=False,
            )  # fmt: skip
            session.commit()
            self.counters["unreadable"] += 1
            logger.warning("transaction %s of %s: %s", entry.tx_id, entry.outlet_id, _UNREADABLE)
            return
        except MaterialRejected as exc:  # purged or corrupted since it was accepted
            breaker.release()
            entry.target = target  # as claimed
            store.dead_letter(
                session, entry, reason="material", detail=exc.reason, status_code=None, now=now,
                notify=True,
            )  # fmt: skip
            session.commit()
            self._outcome_ready.set()  # the outlet is owed a result
            self.counters["material"] += 1
            logger.warning("transaction %s: %s", entry.tx_id, exc.reason)
            return
        claimed = store.Claimed(
            inbox_id=entry.id, tx_id=entry.tx_id, outlet_id=entry.outlet_id, target=target,
            idempotency_key=entry.idempotency_key, attempts=entry.attempts, document=document,
            materials=tuple(materials),
        )  # fmt: skip
        with self._lock:
            self._in_flight[target] += 1
            self._held.add(entry.id)
        future = self._pool.submit(self._deliver, claimed)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)

    def _deliver(self, claimed: store.Claimed) -> None:
        target = self._targets.get(claimed.target)
        breaker = self.breakers[claimed.target]
        queued = False
        try:
            if target is None:  # cannot happen: routed targets are configured
                breaker.release()
                return
            attachments = [
                Attachment(ref=part.material_id, size=part.size, chunks=self._reader(part))
                for part in claimed.materials
            ]
            try:
                result = self._adapters[claimed.target].deliver(
                    idempotency_key=claimed.idempotency_key,
                    document=claimed.document,
                    attachments=attachments,
                )
            except (MaterialRejected, AttachmentError) as exc:  # found corrupt while sent
                breaker.release()
                self._material_failed(claimed, str(getattr(exc, "reason", exc)))
                return
            if result.outcome == "transient":
                breaker.failure()
            else:
                breaker.success()
            # The row stays held until its outcome is committed: its lease keeps other
            # processes off it, this keeps our own rounds off it should the lease end.
            with self._lock:
                self._outcomes.append(_Outcome(claimed, result, datetime.now(UTC)))
                queued = True
            self._outcome_ready.set()
        except Exception:  # recorded nowhere: the lease expires and it is retried
            breaker.release()
            self.counters["internal_error"] += 1
            logger.exception("delivery of %s failed unexpectedly", claimed.tx_id)
        finally:
            with self._lock:
                self._in_flight[claimed.target] -= 1
                if not queued:
                    self._held.discard(claimed.inbox_id)
            self._wake.set()

    def _reader(self, part: MaterialPart) -> Callable[[], Iterator[bytes]]:
        """A material's bytes, chunk by chunk, read in a session of their own."""

        def chunks() -> Iterator[bytes]:
            with self._sessions() as session:
                yield from iter_material(session, part)

        return chunks

    def _material_failed(self, claimed: store.Claimed, reason: str) -> None:
        """The stored material failed while it was being sent: dead letter, no retry."""
        with self._sessions.begin() as session:
            entry = session.get(InboxEntry, claimed.inbox_id)
            if entry is not None and entry.state == "pending":
                store.dead_letter(
                    session, entry, reason="material", detail=reason, status_code=None,
                    now=datetime.now(UTC), notify=True,
                )  # fmt: skip
        self.counters["material"] += 1
        logger.warning("transaction %s: %s", claimed.tx_id, reason)

    def _record_outcomes(self) -> None:
        """Commit the waiting outcomes in one transaction (one turn at the write lock)."""
        with self._lock:
            batch, self._outcomes = self._outcomes, []
        if not batch:
            return
        recorded: list[tuple[_Outcome, int]] = []  # (outcome, attempts) of rows still pending
        try:
            with self._sessions.begin() as session:
                # One read for the batch; record_attempt then finds each in the session.
                # (Held in a name: the session's identity map keeps objects only weakly.)
                ids = [o.claimed.inbox_id for o in batch]
                loaded = session.scalars(
                    select(InboxEntry)
                    .where(InboxEntry.id.in_(ids))
                    .options(defer(InboxEntry.sealed_body))
                ).all()
                for outcome in batch:
                    target = self._targets.get(outcome.claimed.target)
                    assert target is not None  # routed targets are configured
                    entry = store.record_attempt(
                        session, inbox_id=outcome.claimed.inbox_id, target=target,
                        result=outcome.result, now=outcome.at, rng=self._rng,
                    )  # fmt: skip
                    if entry is not None:
                        recorded.append((outcome, entry.attempts))
                del loaded
        except Exception:
            again = [replace(o, tries=o.tries + 1) for o in batch if o.tries + 1 < _OUTCOME_TRIES]
            with self._lock:
                self._outcomes[:0] = again
                kept = {o.claimed.inbox_id for o in again}
                self._held.difference_update(
                    o.claimed.inbox_id for o in batch if o.claimed.inbox_id not in kept
                )
            raise  # tried again with the next outcome or poll, not at once
        with self._lock:
            self._held.difference_update(o.claimed.inbox_id for o in batch)
        for outcome in batch:  # the targets' answers, whether or not the row was still ours
            self.counters[outcome.result.outcome] += 1
        for outcome, attempts in recorded:
            claimed, result = outcome.claimed, outcome.result
            if result.outcome == "transient":
                logger.info(
                    "delivery of %s to %s failed (attempt %d): %s",
                    claimed.tx_id, claimed.target, attempts, result.detail,
                )  # fmt: skip
            elif result.outcome == "permanent":
                logger.warning(
                    "target %s rejected %s with HTTP %s; dead letter",
                    claimed.target, claimed.tx_id, result.status_code,
                )  # fmt: skip

    # -- results back to the outlet -------------------------------------------

    def _send_results(self) -> None:
        with self._sessions() as session:
            rows = session.scalars(
                select(InboxEntry)
                .where(InboxEntry.result_pending.is_(True))
                .order_by(InboxEntry.id)
                .limit(_RESULT_BATCH)
                .options(defer(InboxEntry.sealed_body))  # a result carries no body
            ).all()
            if not rows:
                return
            results = [
                TransactionResult(
                    outlet_id=entry.outlet_id,
                    session=0,
                    seq=0,
                    tx_id=entry.tx_id,
                    outcome="delivered" if entry.state == "delivered" else "rejected",
                    case_number=entry.case_number if entry.state == "delivered" else None,
                    reason=entry.last_error if entry.state != "delivered" else None,
                )
                for entry in rows
            ]
            # A result the broker did not take stays pending for the next round (the
            # broker away, or its PUBACK late); one the outlet gets twice it ignores.
            published = self._publish_results(results)
            sent = 0
            for entry, done in zip(rows, published, strict=True):
                if done:
                    entry.result_pending = False
                    sent += 1
            if sent:
                session.commit()
                self.counters["results_sent"] += sent
