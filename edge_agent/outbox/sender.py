"""``OutboxSender``: publish due outbox entries in order, with a window, a rate and resends.

Entries go out in (priority class, insertion) order over one QoS 1 connection, at most
``window`` in flight; unacked ones are resent with backoff, all of them after a reconnect.
Why, and why the server must not rely on arrival order: docs/outbox.md, "Ordering decision".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

from edge_agent.outbox.models import AckOutcome, OutgoingTx
from edge_agent.outbox.outbox import Outbox
from edge_agent.outbox.ratelimit import TokenBucket
from govedge_wire import Transaction, TransactionAck

log = logging.getLogger(__name__)

# Entries in flight (sent, not yet acknowledged by the fleet's txack) by default. Of
# those, at most MQTT_INFLIGHT are QoS 1 publishes awaiting the broker's PUBACK (the
# client's max_inflight_messages; paho holds the rest in order until PUBACKs come).
# The fleet's ack comes a server batch later than the PUBACK: with 64 awaiting it the
# drain through a real server waited on that round trip, and each server batch held
# fewer of one outlet's transactions; 256 drained a backlog 1.9 x as fast with a third
# less server CPU per transaction (docs/performance.md, "Outbox drain", session 25).
DEFAULT_WINDOW: Final = 256
MQTT_INFLIGHT: Final = 64
# Acks applied in one SQLite transaction at most (they arrive at most ``window`` at a time).
_MAX_ACK_BATCH: Final = 256
# While a window is in flight, how long acks gather before one commit (a thread hop and
# a commit per ack or two cost more CPU than the transaction's send: issue 17).
_ACK_GATHER_S: Final = 0.005
# While entries are in flight, the window is refilled only once this share of it is free:
# refilling one slot per ack cost a read and a bookkeeping commit per transaction
# (docs/performance.md, "Outbox drain", issue 17).
_REFILL_SHARE: Final = 4


class OutboxSender:
    """Drains an ``Outbox`` through ``publish``; one ``run()`` per MQTT connection.

    ``make_message`` is the session's callback that completes an ``OutgoingTx`` with the
    outlet id, session and next ``seq`` (``tx.to_message(outlet_id=..., session=...,
    seq=...)``). ``publish`` must return once the broker has the message (QoS 1 PUBACK)
    and raise if the connection failed; the error ends ``run`` for the session to handle.
    """

    def __init__(
        self,
        outbox: Outbox,
        publish: Callable[[Transaction], Awaitable[None]],
        *,
        make_message: Callable[[OutgoingTx], Transaction],
        rate_per_s: float = 20.0,
        burst: int = 20,
        window: int = DEFAULT_WINDOW,
        batch_size: int = 32,
        ack_timeout_s: float = 30.0,
        max_backoff_s: float = 600.0,
        publish_timeout_s: float = 10.0,
        idle_poll_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if window < 1 or batch_size < 1:
            raise ValueError("window and batch_size must be >= 1")
        self._outbox = outbox
        self._publish = publish
        self._make_message = make_message
        self._bucket = TokenBucket(rate_per_s, burst=burst, clock=clock, sleep=sleep)
        self._window = window
        self._batch_size = batch_size
        self._refill_at = max(1, min(batch_size, window // _REFILL_SHARE))
        self._ack_timeout_s = ack_timeout_s
        self._max_backoff_s = max_backoff_s
        self._publish_timeout_s = publish_timeout_s
        self._idle_poll_s = idle_poll_s
        self._clock = clock
        self._inflight: dict[str, float] = {}  # tx_id -> ack deadline (clock)
        self._acks: list[tuple[TransactionAck, asyncio.Future[AckOutcome]]] = []
        self._ack_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._failure: BaseException | None = None  # a publish of run()'s batches failed
        self.sent_total = 0
        self.resent_total = 0
        self.ack_timeouts = 0

    @property
    def inflight(self) -> int:
        """Entries sent and not yet acknowledged (nor timed out)."""
        return len(self._inflight)

    def resend_after(self, attempt: int) -> float:
        """Seconds to wait for the ack of send number ``attempt`` before sending again."""
        return min(self._max_backoff_s, self._ack_timeout_s * 2.0 ** min(attempt - 1, 32))

    async def run(self) -> None:
        """Send until ``stop()``; call once per connection, after the birth was published.

        Unlike ``pump`` the loop does not wait for a batch's PUBACKs before the next
        refill: it waited ~8 ms per batch while acks had opened the window (issue 17).
        A failed publish still ends ``run`` with its error; ``stop`` lets the batches
        handed to the client finish (their PUBACKs) before ``run`` returns.
        """
        self._stopping.clear()
        self._inflight.clear()
        self._failure = None
        await self._outbox.make_all_due()
        batches: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            batches.discard(task)
            if not task.cancelled() and task.exception() is not None and self._failure is None:
                self._failure = task.exception()
                self._outbox.notify()

        try:
            while not self._stopping.is_set():
                if self._failure is not None:
                    raise self._failure
                publishes, outgoing = await self._start_batch()
                if not publishes:
                    await self._outbox.wait_for_work(max_wait_s=await self._idle_wait())
                    continue
                batch = asyncio.create_task(
                    self._finish_batch(publishes, outgoing), name="outbox-sender-pubacks"
                )
                batches.add(batch)
                batch.add_done_callback(finished)
            await asyncio.gather(*batches)
        finally:
            for batch in list(batches):
                batch.cancel()
            await asyncio.gather(*batches, return_exceptions=True)
        log.debug("outbox sender stopped with %d in flight", len(self._inflight))

    async def resend_unacked(self) -> int:
        """Forget what is in flight and make every unacked entry due again, oldest first.

        Called when the fleet server comes back: whatever was published while no server
        was subscribed is gone, and waiting out the ack timeout would only delay it.
        """
        self._inflight.clear()
        return await self._outbox.make_all_due()

    def set_rate(self, rate_per_s: float) -> None:
        """Send at ``rate_per_s`` from now on (a fleet config applied live)."""
        self._bucket.set_rate(rate_per_s)

    def stop(self) -> None:
        """Stage one of shutdown: take no new entries; ``run`` returns after the current send."""
        self._stopping.set()
        self._outbox.notify()

    async def pump(self) -> int:
        """Send what the window, the rate limit and the due entries allow now; count sent.

        One batch: the due entries are marked sent in ONE bookkeeping commit (durable
        first: a resend after a crash carries ``attempt + 1``), then published in order
        without waiting for each PUBACK before the next (the client library keeps the
        order on the one connection); returns when the broker acknowledged them all.
        """
        publishes, outgoing = await self._start_batch()
        await self._finish_batch(publishes, outgoing)
        return len(publishes)

    async def _start_batch(self) -> tuple[list[asyncio.Task[None]], list[OutgoingTx]]:
        """Take the next batch and hand its publishes to the client, in order; the
        publish tasks (PUBACK pending) and what they send. Nothing when the window, the
        due entries or a stop allow nothing."""
        self._expire()
        room = self._window - len(self._inflight)
        if room <= 0 or self._stopping.is_set():
            return [], []
        if self._inflight and room < self._refill_at:
            return [], []  # more acks are coming: refill in one batch once they made room
        # Read and marked sent in one call of the outbox's thread (one commit).
        batch = await self._outbox.take_due(
            min(room, self._batch_size),
            skip=frozenset(self._inflight),
            resend_after_s=self.resend_after,
        )
        outgoing = [e.outgoing() for e in batch]
        publishes: list[asyncio.Task[None]] = []
        try:
            for tx in outgoing:
                if self._stopping.is_set():
                    break
                if publishes and not self._bucket.has_token():
                    # The messages already taken go to the client before this one waits,
                    # so each leaves when its token was taken (tasks start in order).
                    await asyncio.sleep(0)
                await self._bucket.acquire()
                message = self._make_message(tx)
                # In flight before the publish: the ack can overtake our PUBACK handling.
                self._inflight[tx.tx_id] = self._clock() + self.resend_after(tx.attempt)
                publishes.append(asyncio.create_task(self._publish_one(message)))
        except BaseException:
            await _cancel(publishes)
            raise
        return publishes, outgoing[: len(publishes)]

    async def _finish_batch(
        self, publishes: list[asyncio.Task[None]], outgoing: list[OutgoingTx]
    ) -> None:
        """Wait for the batch's PUBACKs (an error cancels the rest and is raised)."""
        try:
            await asyncio.gather(*publishes)
        except BaseException:
            await _cancel(publishes)
            raise
        for tx in outgoing:
            self.sent_total += 1
            if tx.attempt > 1:
                self.resent_total += 1

    async def _publish_one(self, message: Transaction) -> None:
        async with asyncio.timeout(self._publish_timeout_s):
            await self._publish(message)

    def ack_soon(self, ack: TransactionAck) -> asyncio.Future[AckOutcome]:
        """Queue a TransactionAck for the next batched commit; the future gets its outcome.

        The downlink handler calls this and does not wait, so acks arriving while one
        batch commits make up the next batch (group commit): one commit per batch.
        """
        inflight = self._inflight
        if inflight.pop(ack.tx_id, None) is not None and (
            len(inflight) <= self._window - self._refill_at
        ):
            # Room for a refill: the sender need not wait for the commit. Not before:
            # it would only wake to find too little room (a wake-up per ack).
            self._outbox.notify()
        future: asyncio.Future[AckOutcome] = asyncio.get_running_loop().create_future()
        self._acks.append((ack, future))
        if self._ack_task is None or self._ack_task.done():
            self._ack_task = asyncio.create_task(self._apply_acks(), name="outbox-acks")
        return future

    async def on_ack(self, ack: TransactionAck) -> AckOutcome:
        """Apply a TransactionAck and wait for its commit (shielded: the delete is the
        durable write that ends this entry's life)."""
        return await asyncio.shield(self.ack_soon(ack))

    async def acks_applied(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) until every queued ack was committed."""
        task = self._ack_task
        if task is None or task.done():
            return True
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        return bool(done)

    async def _apply_acks(self) -> None:
        while self._acks:
            if self._inflight and len(self._acks) < _MAX_ACK_BATCH:
                # More acks are on their way: a moment's wait puts them in this commit.
                await asyncio.sleep(_ACK_GATHER_S)
            batch, self._acks = self._acks[:_MAX_ACK_BATCH], self._acks[_MAX_ACK_BATCH:]
            try:
                outcomes = await self._outbox.apply_acks([ack for ack, _ in batch])
            except Exception as exc:  # handed to every waiter
                # Not deleted: the entries are resent and the server answers duplicate.
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException:
                for _, future in batch:
                    future.cancel()
                raise
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)

    def _expire(self) -> None:
        now = self._clock()
        expired = [tx_id for tx_id, deadline in self._inflight.items() if deadline <= now]
        for tx_id in expired:
            del self._inflight[tx_id]
            self.ack_timeouts += 1
        if expired:
            log.info("outbox: %d entries not acknowledged in time; resending", len(expired))

    async def _idle_wait(self) -> float | None:
        """How long nothing can become due unless the outbox says so (a put, an ack, a
        stop: ``Outbox.notify``): until the first ack deadline in flight, else until the
        earliest entry that waits for a time (``None``: none does). An idle agent does
        not poll its outbox: each poll woke the event loop and the SQLite thread (issue
        17). ``idle_poll_s`` caps the wait (tests whose clocks are not real time)."""
        if self._inflight:
            wait: float | None = max(0.0, min(self._inflight.values()) - self._clock())
        else:
            wait = await self._outbox.next_due_in_s()
        if self._idle_poll_s is None:
            return wait
        return self._idle_poll_s if wait is None else min(self._idle_poll_s, wait)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
