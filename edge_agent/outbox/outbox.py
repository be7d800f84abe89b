"""``Outbox``: the async face of the store; all SQLite work runs in one worker thread.

One class on purpose (~450 lines of one-line wrappers): every public call goes through
the same executor and timeout. The executor is single-threaded, so SQLite calls are
serialised without a lock and never block the event loop. A ``put`` that timed out may
still have committed, which is why ``put`` is idempotent by ``tx_id``.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Final, ParamSpec, Self, TypeVar

from pydantic import JsonValue

from edge_agent.outbox import acks as _acks
from edge_agent.outbox import materials as _materials
from edge_agent.outbox import receipts as _receipts
from edge_agent.outbox.codec import (
    DEFAULT_CHUNK_BYTES,
    MATERIAL_ID_PATTERN,
    check_chunk_bytes,
    check_id,
    encode_body,
)
from edge_agent.outbox.errors import OutboxClosed, StorageError
from edge_agent.outbox.models import (
    AckOutcome,
    DeadLetter,
    DueEntry,
    MaterialProgress,
    OutboxStats,
    PriorityClass,
    Receipt,
    StoredReceipt,
    StoredTransaction,
)
from edge_agent.outbox.store import NewEntry, Store
from govedge_wire import TransactionAck

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_MATERIAL_RETENTION_MS: Final = 30 * 86_400_000
# Idempotency receipts are kept this long (the local API's keys too: docs/local-api.md).
RECEIPT_RETENTION_S: Final = 30 * 86_400.0


class Outbox:
    """Durable, encrypted, prioritised store of everything the agent must deliver.

    ``async with Outbox(path, key_path=..., quota_bytes=...) as outbox:``. Entries leave
    only by ``ack`` (the server's TransactionAck) or into the dead letters (``reject``,
    or a failed authentication); nothing accepted is ever dropped.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        key_path: Path | str,
        quota_bytes: int,
        low_priority_share: float = 0.2,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        op_timeout_s: float = 30.0,
        rate_window_s: float = 300.0,
        max_defer_s: float = 3600.0,
        receipt_retention_s: float = RECEIPT_RETENTION_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if quota_bytes <= 0:
            raise ValueError("quota_bytes must be positive")
        if not 0.0 < low_priority_share <= 1.0:
            raise ValueError("low_priority_share must be in (0, 1]")
        self._path = Path(path)
        self._key_path = Path(key_path)
        self._quota_bytes = quota_bytes
        self._low_share = low_priority_share
        self._chunk_bytes = check_chunk_bytes(chunk_bytes)
        self._op_timeout_s = op_timeout_s
        self._rate_window_s = rate_window_s
        self._max_defer_ms = int(max_defer_s * 1000)
        self.receipt_retention_s = receipt_retention_s
        self._receipts_pruned_s = 0.0
        self._clock = clock
        self._executor: ThreadPoolExecutor | None = None
        self._store: Store | None = None
        self._work = asyncio.Event()
        self._ack_times: collections.deque[float] = collections.deque()
        self._unknown_acks = 0

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._executor is not None:
            raise RuntimeError("an Outbox can be entered once")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-sqlite")
        try:
            self._store = await self._run(
                functools.partial(
                    Store.open,
                    self._path,
                    key_path=self._key_path,
                    quota_bytes=self._quota_bytes,
                    low_priority_share=self._low_share,
                ),
                opening=True,
            )
            await self._run(
                functools.partial(
                    _materials.prune_delivered,
                    self._store,
                    older_than_ms=self._now_ms() - _MATERIAL_RETENTION_MS,
                )
            )
            await self.prune_receipts()
        except BaseException:
            await self._close()
            raise
        log.info("outbox open at %s", self._path)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Shielded: the checkpoint-and-close is the last durable write of the outbox.
        await asyncio.shield(self._close())

    async def _close(self) -> None:
        store, executor = self._store, self._executor
        self._store = None
        if executor is None:
            return
        try:
            if store is not None:
                await asyncio.get_running_loop().run_in_executor(executor, store.close)
        finally:
            executor.shutdown(wait=False)
            self._executor = None

    async def _run(self, call: Callable[[], R], *, opening: bool = False) -> R:
        executor = self._executor
        if executor is None or (self._store is None and not opening):
            raise OutboxClosed("the outbox is not open")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._op_timeout_s):
                return await loop.run_in_executor(executor, call)
        except TimeoutError:
            raise StorageError(
                f"outbox operation did not finish within {self._op_timeout_s} s"
            ) from None

    def _open_store(self) -> Store:
        if self._store is None:
            raise OutboxClosed("the outbox is not open")
        return self._store

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- accepting -------------------------------------------------------------------

    async def put(
        self,
        tx_kind: str,
        body: dict[str, JsonValue],
        *,
        priority_class: PriorityClass,
        tx_id: str | None = None,
        materials: Sequence[str] = (),
        receipt: Receipt | None = None,
    ) -> StoredTransaction:
        """Store one transaction durably (fsynced) and return its metadata.

        Returns only after the commit: then the clerk app may be told "accepted". A
        known ``tx_id`` returns the existing entry. ``materials`` are ids from
        ``put_material``; the transaction is sent only after all their chunks were acked.
        ``receipt`` (for a client's idempotency key = ``tx_id``) commits with the entry
        and outlives its ack: ``receipt(tx_id)`` reads it back for a retried request.
        """
        store = self._open_store()
        tx_id = check_id(tx_id or uuid.uuid4().hex, what="tx_id")
        priority_class = PriorityClass(priority_class)
        material_ids = tuple(check_id(m, what="material_id") for m in materials)

        def work() -> tuple[StoredTransaction, bool]:
            entry = NewEntry(
                tx_id=tx_id,
                tx_kind=tx_kind,
                priority_class=priority_class,
                plaintext=encode_body(tx_id, tx_kind, body),
                materials=material_ids,
                receipt=receipt,
            )
            return store.put(entry, now_ms=self._now_ms())

        stored, created = await self._run(work)
        if created:
            self._work.set()
            log.debug("outbox accepted %s (%s, %s)", tx_id, tx_kind, priority_class.name)
        if receipt is not None and self._clock() - self._receipts_pruned_s > 3600.0:
            try:  # hourly while receipts are made; never fails the put that committed
                await self.prune_receipts()
            except StorageError as exc:
                log.warning("pruning old receipts failed: %s", exc)
        return stored

    async def put_in_sequence(
        self,
        tx_kind: str,
        body: dict[str, JsonValue],
        *,
        stream: str,
        position: int,
        priority_class: PriorityClass,
        tx_id: str,
    ) -> StoredTransaction | None:
        """Put record ``position`` (> 0) of ``stream`` unless it was put before; fsynced.

        For records another store keeps in sequence (queue events): the entry and the
        stream's cursor commit together, so replaying the records after the cursor at
        any time (after a crash, after each operation) puts each one exactly once.
        Returns ``None`` for a position at or before the cursor.
        """
        store = self._open_store()
        tx_id = check_id(tx_id, what="tx_id")
        priority_class = PriorityClass(priority_class)

        def work() -> StoredTransaction | None:
            entry = NewEntry(
                tx_id=tx_id,
                tx_kind=tx_kind,
                priority_class=priority_class,
                plaintext=encode_body(tx_id, tx_kind, body),
            )
            return store.put_in_sequence(
                entry, stream=stream, position=position, now_ms=self._now_ms()
            )

        stored = await self._run(work)
        if stored is not None:
            self._work.set()
            log.debug("outbox accepted %s (%s #%d)", tx_id, stream, position)
        return stored

    async def skip_in_sequence(self, *, stream: str, position: int) -> None:
        """Move ``stream``'s cursor past a record that can never be sent (fsynced)."""
        store = self._open_store()
        await self._run(functools.partial(store.skip_in_sequence, stream=stream, position=position))

    async def cursor(self, stream: str) -> int:
        """The last position of ``stream`` put into the outbox (0: none yet)."""
        store = self._open_store()
        return await self._run(functools.partial(store.cursor, stream))

    async def put_material(
        self, data: bytes, *, material_id: str | None = None
    ) -> MaterialProgress:
        """Store a material durably as sealed chunks; idempotent by ``material_id``."""
        store = self._open_store()
        material_id = check_id(
            material_id or uuid.uuid4().hex, what="material_id", pattern=MATERIAL_ID_PATTERN
        )
        progress, created = await self._run(
            functools.partial(
                _materials.put_material,
                store,
                material_id,
                data,
                chunk_bytes=self._chunk_bytes,
                now_ms=self._now_ms(),
            )
        )
        if created:
            self._work.set()
            log.debug("outbox accepted material %s in %d chunks", material_id, progress.chunk_count)
        return progress

    async def material_progress(self, material_id: str) -> MaterialProgress | None:
        """How far a material's transfer got, or ``None`` if it is unknown."""
        store = self._open_store()
        return await self._run(functools.partial(_materials.material_progress, store, material_id))

    # -- sending ---------------------------------------------------------------------

    async def next_batch(self, limit: int) -> list[DueEntry]:
        """Up to ``limit`` due entries, decrypted, in (priority class, sequence) order."""
        store = self._open_store()
        return await self._run(
            functools.partial(
                store.next_batch, limit, now_ms=self._now_ms(), max_defer_ms=self._max_defer_ms
            )
        )

    async def mark_sent(self, *tx_ids: str, resend_after_s: float) -> int:
        """Durably count one more attempt per id; each is due again after ``resend_after_s``."""
        store = self._open_store()
        return await self._run(
            functools.partial(
                store.mark_sent,
                tx_ids,
                now_ms=self._now_ms(),
                resend_after_ms=int(resend_after_s * 1000),
            )
        )

    async def take_due(
        self, limit: int, *, skip: Collection[str], resend_after_s: Callable[[int], float]
    ) -> list[DueEntry]:
        """``next_batch`` without ``skip``, each marked sent (``mark_sent``) for its next
        attempt with ``resend_after_s(attempt)``: one call of the worker thread, one commit."""
        store = self._open_store()
        return await self._run(
            functools.partial(
                store.take_due,
                limit,
                now_ms=self._now_ms(),
                max_defer_ms=self._max_defer_ms,
                skip=skip,
                resend_after_ms=lambda attempt: int(resend_after_s(attempt) * 1000),
            )
        )

    async def make_all_due(self) -> int:
        """Make every pending entry due now: after a reconnect, resend from the oldest."""
        store = self._open_store()
        changed = await self._run(store.make_all_due)
        self._work.set()
        return changed

    async def next_due_in_s(self) -> float | None:
        """Seconds until the earliest entry not due now falls due; ``None`` when no entry
        waits for a time (every other change to the due entries sets ``wait_for_work``)."""
        store = self._open_store()
        now_ms = self._now_ms()
        due_ms = await self._run(
            functools.partial(store.next_due_ms, now_ms=now_ms, max_defer_ms=self._max_defer_ms)
        )
        return None if due_ms is None else (due_ms - now_ms) / 1000

    async def wait_for_work(self, *, max_wait_s: float | None) -> bool:
        """Wait until something was put or acked, at most ``max_wait_s`` (``None``: no
        limit); ``False`` if not."""
        try:
            async with asyncio.timeout(max_wait_s):
                await self._work.wait()
        except TimeoutError:
            return False
        self._work.clear()
        return True

    def notify(self) -> None:
        """Wake ``wait_for_work`` (the sender calls it when window room opens)."""
        self._work.set()

    # -- acknowledgements ------------------------------------------------------------

    async def ack(self, tx_id: str) -> bool:
        """Remove an entry the server durably stored; an unknown id is a counted no-op."""
        store = self._open_store()
        removed = await self._run(functools.partial(_acks.ack, store, tx_id, now_ms=self._now_ms()))
        if removed:
            self._record_ack()
        else:
            self._unknown_acks += 1
            log.debug("outbox ack for unknown %s ignored", tx_id)
        return removed

    async def reject(self, tx_id: str, reason: str | None) -> bool:
        """Move an entry the server refused to the dead letters (kept, never resent)."""
        store = self._open_store()
        moved = await self._run(
            functools.partial(_acks.reject, store, tx_id, reason, now_ms=self._now_ms())
        )
        if moved:
            self._record_ack()
            log.warning("outbox entry %s rejected by the server; moved to dead letters", tx_id)
        else:
            self._unknown_acks += 1
        return moved

    async def apply_ack(self, ack: TransactionAck) -> AckOutcome:
        """Apply a server TransactionAck: accepted/duplicate remove, rejected dead-letters."""
        return (await self.apply_acks([ack]))[0]

    async def apply_acks(self, acks: Sequence[TransactionAck]) -> list[AckOutcome]:
        """Apply several TransactionAcks in ONE SQLite transaction; an outcome per ack.

        The sender batches the acks that arrive while the previous batch commits, so
        the delete costs one commit per batch, not per transaction.
        """
        store = self._open_store()
        if not acks:
            return []
        outcomes = await self._run(
            functools.partial(
                _acks.apply_acks,
                store,
                [(a.tx_id, a.status, a.reason) for a in acks],
                now_ms=self._now_ms(),
            )
        )
        for ack, outcome in zip(acks, outcomes, strict=True):
            if outcome == "unknown":
                self._unknown_acks += 1
                log.debug("outbox ack for unknown %s ignored", ack.tx_id)
                continue
            self._record_ack()
            if outcome == "dead_lettered":
                log.warning(
                    "outbox entry %s rejected by the server; moved to dead letters", ack.tx_id
                )
        return outcomes

    def _record_ack(self) -> None:
        now = self._clock()
        self._ack_times.append(now)
        while self._ack_times[0] < now - self._rate_window_s:
            self._ack_times.popleft()
        self._work.set()

    # -- inspection ------------------------------------------------------------------

    async def receipt(self, tx_id: str) -> StoredReceipt | None:
        """The receipt ``put`` kept for ``tx_id`` (``receipt_retention_s``), or None."""
        store = self._open_store()
        return await self._run(functools.partial(_receipts.receipt, store, tx_id))

    async def prune_receipts(self) -> int:
        """Forget receipts older than ``receipt_retention_s`` (also done at open)."""
        store = self._open_store()
        self._receipts_pruned_s = self._clock()
        cutoff = self._now_ms() - int(self.receipt_retention_s * 1000)
        return await self._run(
            functools.partial(_receipts.prune_receipts, store, older_than_ms=cutoff)
        )

    async def read(self, tx_id: str) -> DueEntry | None:
        """One pending entry, decrypted; ``CorruptEntry`` (after quarantine) if tampered."""
        store = self._open_store()
        return await self._run(functools.partial(store.read, tx_id, now_ms=self._now_ms()))

    async def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, newest first, metadata only."""
        store = self._open_store()
        return await self._run(functools.partial(_acks.dead_letters, store, limit))

    async def discard_dead_letter(self, tx_id: str) -> bool:
        """Delete one dead letter for good: an operator's decision, never automatic."""
        store = self._open_store()
        return await self._run(functools.partial(_acks.discard_dead_letter, store, tx_id))

    def set_quota_bytes(self, quota_bytes: int) -> None:
        """Hold at most ``quota_bytes`` from the next write on (a fleet config applied live)."""
        if quota_bytes <= 0:
            raise ValueError("quota_bytes must be positive")
        self._quota_bytes = quota_bytes
        if self._store is not None:
            self._store.quota_bytes = quota_bytes

    async def stats(self) -> OutboxStats:
        """Depth per class, oldest age, delivery rate, dead letters and quota use."""
        store = self._open_store()
        raw = await self._run(functools.partial(store.stats, now_ms=self._now_ms()))
        now = self._clock()
        while self._ack_times and self._ack_times[0] < now - self._rate_window_s:
            self._ack_times.popleft()
        return OutboxStats(
            depth=raw["depth"],
            oldest_age_s=raw["oldest_age_s"],
            delivery_rate_per_min=len(self._ack_times) * 60.0 / self._rate_window_s,
            dead_letters=raw["dead_letters"],
            quarantined=raw["quarantined"],
            unknown_acks=self._unknown_acks,
            used_bytes=raw["used_bytes"],
            quota_bytes=self._quota_bytes,
            materials_pending=raw["materials_pending"],
        )
