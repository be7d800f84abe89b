"""``Idempotency-Key`` for the counter's transactions: one service for every route.

A key becomes the transaction's ``tx_id`` and is bound, in the local API's state
database, to a SHA-256 of the canonical request (``request_digest``): the same key with
another request is ``IdempotencyConflict``; a request that stored nothing releases its
key so the retry runs afresh. Two ways to meet a key already in use:

- ``serialised``: requests with the same key run one after the other (submissions: the
  outbox itself stores a ``tx_id`` once, so the retry simply files again);
- ``joined``: a retry joins the call still running under the key, and a retry after it
  finished gets the answer from the receipt the outbox committed with the entry
  (evaluations: the citizen is never asked twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from typing import Any, Protocol, TypeVar

from pydantic import JsonValue

from edge_agent.outbox import Outbox

__all__ = [
    "Idempotency",
    "IdempotencyConflict",
    "IdempotencyError",
    "KeyBindings",
    "RequestInProgress",
    "request_digest",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


class IdempotencyError(Exception):
    """An ``Idempotency-Key`` cannot be used now; ``key`` is the key (not personal data)."""

    def __init__(self, message: str, *, key: str) -> None:
        super().__init__(message)
        self.key = key


class IdempotencyConflict(IdempotencyError):
    """The key was first used with another request."""

    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key} was already used with a different body", key=key)


class RequestInProgress(IdempotencyError):
    """A request with the same key kept running past the wait."""

    def __init__(self, key: str) -> None:
        super().__init__(
            "a request with the same Idempotency-Key is still being processed", key=key
        )


class KeyBindings(Protocol):
    """Where keys are bound to request digests (the local API's state database)."""

    async def bind_key(self, key: str, *, body_sha256: str) -> tuple[str, bool]: ...

    async def unbind_key(self, key: str, *, body_sha256: str) -> None: ...


def request_digest(payload: Mapping[str, Any], *, kind: str | None = None) -> str:
    """SHA-256 (hex) of the canonical request: sorted, compact JSON.

    Whitespace, key order and explicit nulls (drop them before) do not matter. ``kind``
    prefixes it so a key used for one kind never matches another. The digests are stored
    with the keys, so this form must not change.
    """
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    text = canonical if kind is None else f"{kind}\n{canonical}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _KeyLocks:
    """One ``asyncio.Lock`` per key while someone holds or waits for it (then forgotten)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str, *, timeout_s: float) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            try:
                async with asyncio.timeout(timeout_s):
                    await lock.acquire()
            except TimeoutError as exc:
                raise RequestInProgress(key) from exc
            try:
                yield
            finally:
                lock.release()
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class _KeyedCalls:
    """One running call per key; a request with the same key joins it.

    The call runs as its own task, not as part of the HTTP request that started it, so a
    client that disconnects does not end it: the citizen still rates, the rating is
    still recorded, and the retry gets it.
    """

    def __init__(self) -> None:
        self._running: dict[str, tuple[str, asyncio.Task[Any]]] = {}

    def __len__(self) -> int:
        return len(self._running)

    async def run(self, key: str, digest: str, start: Callable[[], Coroutine[Any, Any, T]]) -> T:
        running = self._running.get(key)
        if running is None:
            task: asyncio.Task[Any] = asyncio.create_task(start(), name=f"keyed-call-{key}")
            running = (digest, task)
            self._running[key] = running
            task.add_done_callback(lambda done: self._finished(key, done))
        elif running[0] != digest:
            raise IdempotencyConflict(key)
        result: T = await asyncio.shield(running[1])  # cancelling a caller spares the call
        return result

    def _finished(self, key: str, task: asyncio.Task[Any]) -> None:
        if self._running.get(key, ("", None))[1] is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # retrieved: every caller may have gone (client disconnects)


class Idempotency:
    """Binds keys to requests and runs each keyed request once (see the module doc)."""

    def __init__(self, bindings: KeyBindings, outbox: Outbox, *, wait_s: float) -> None:
        self._bindings = bindings
        self._outbox = outbox
        self._wait_s = wait_s  # a retry waits this long for the same key in flight
        self._locks = _KeyLocks()
        self._calls = _KeyedCalls()

    async def serialised(
        self,
        key: str,
        digest: str,
        work: Callable[[], Awaitable[T]],
        *,
        release_on: tuple[type[BaseException], ...],
    ) -> T:
        """Run ``work`` under ``key``, after any earlier request with it finished.

        ``release_on``: the errors that mean nothing was stored, so the key is free again.
        """
        async with self._locks.hold(key, timeout_s=self._wait_s):
            new = await self._bind(key, digest)
            try:
                return await work()
            except release_on:
                if new:
                    await self._bindings.unbind_key(key, body_sha256=digest)
                raise

    async def joined(
        self,
        key: str,
        digest: str,
        work: Callable[[], Awaitable[T]],
        *,
        tx_kind: str,
        replay: Callable[[dict[str, JsonValue]], T],
        recorded: Callable[[T], bool],
    ) -> T:
        """Run ``work`` under ``key`` once: join the running call, or replay its receipt.

        ``work`` must put its entry with a ``Receipt`` bound to ``digest`` (tx_id = key);
        ``replay`` turns a stored receipt's answer into the result; a result for which
        ``recorded`` is false (nothing stored) releases the key, as does an error.
        """

        async def once() -> T:
            receipt = await self._outbox.receipt(key)
            if receipt is not None:
                if receipt.tx_kind != tx_kind or receipt.request_sha256 != digest:
                    raise IdempotencyConflict(key)
                return replay(receipt.answer)
            new = await self._bind(key, digest)
            try:
                result = await work()
            except Exception:
                if new:
                    await self._release(key, digest)
                raise
            if new and not recorded(result):
                await self._release(key, digest)
            return result

        return await self._calls.run(key, digest, once)

    async def _bind(self, key: str, digest: str) -> bool:
        bound, new = await self._bindings.bind_key(key, body_sha256=digest)
        if bound != digest:
            raise IdempotencyConflict(key)
        return new

    async def _release(self, key: str, digest: str) -> None:
        """Unbind ``key`` unless an entry was recorded under it (a put that failed late)."""
        try:
            if await self._outbox.receipt(key) is None:
                await self._bindings.unbind_key(key, body_sha256=digest)
        except Exception:  # the request's own error is the one to answer with
            log.warning("could not release Idempotency-Key %s", key, exc_info=True)
