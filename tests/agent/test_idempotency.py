"""``edge_agent.idempotency`` on a real state database and a real outbox on disk.

The routes' behaviour is tested over HTTP (tests/local_api/test_submissions.py,
test_evaluations.py); these pin the service's own rules: a key bound to one digest, a
refusal frees it, same-key requests run one at a time or join, receipts replay.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from edge_agent.idempotency import (
    Idempotency,
    IdempotencyConflict,
    RequestInProgress,
    request_digest,
)
from edge_agent.local_api.state import STATE_FILE, LocalStateStore
from edge_agent.outbox import Outbox, PriorityClass, Receipt
from tests.outbox.helpers import make_outbox

KEY = "case-key-0001"
A = request_digest({"item_code": "000101", "window": "3"})
B = request_digest({"item_code": "000101", "window": "4"})


@asynccontextmanager
async def service(tmp: Path, *, wait_s: float = 30.0) -> AsyncIterator[Idempotency]:
    async with outlet(tmp, wait_s=wait_s) as (keys, _):
        yield keys


@asynccontextmanager
async def outlet(tmp: Path, *, wait_s: float = 30.0) -> AsyncIterator[tuple[Idempotency, Outbox]]:
    async with LocalStateStore(tmp / STATE_FILE) as state, make_outbox(tmp) as outbox:
        yield Idempotency(state, outbox, wait_s=wait_s), outbox


def test_the_digest_ignores_key_order_and_separates_kinds() -> None:
    assert request_digest({"a": 1, "b": "张"}) == request_digest({"b": "张", "a": 1})
    assert request_digest({"a": 1}) != request_digest({"a": 1}, kind="evaluation")


def test_a_key_stays_bound_to_its_first_request_unless_that_was_refused(tmp_path: Path) -> None:
    async def done() -> str:
        return "stored"

    async def refused() -> str:
        raise ValueError("nothing stored")

    async def scenario() -> None:
        async with service(tmp_path) as keys:
            with pytest.raises(ValueError, match="nothing stored"):
                await keys.serialised(KEY, A, refused, release_on=(ValueError,))
            # the refusal freed the key: another request may take it
            assert await keys.serialised(KEY, B, done, release_on=(ValueError,)) == "stored"
            assert await keys.serialised(KEY, B, done, release_on=(ValueError,)) == "stored"
            with pytest.raises(IdempotencyConflict):
                await keys.serialised(KEY, A, done, release_on=(ValueError,))

    asyncio.run(scenario())


def test_same_key_requests_run_one_after_the_other(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with service(tmp_path, wait_s=0.2) as keys:
            release, started = asyncio.Event(), asyncio.Event()
            running: list[str] = []

            async def first() -> str:
                running.append("first")
                started.set()
                await release.wait()
                return "first"

            async def second() -> str:
                running.append("second")
                return "second"

            one = asyncio.create_task(keys.serialised(KEY, A, first, release_on=()))
            await started.wait()
            # the second waits past wait_s for the key: refused, not run
            with pytest.raises(RequestInProgress):
                await keys.serialised(KEY, A, second, release_on=())
            assert running == ["first"]
            release.set()
            assert await one == "first"
            assert await keys.serialised(KEY, A, second, release_on=()) == "second"

    asyncio.run(scenario())


def test_a_joined_retry_shares_the_running_call_then_replays_its_receipt(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with outlet(tmp_path) as (keys, outbox):
            calls: list[int] = []
            release, started = asyncio.Event(), asyncio.Event()

            async def rate() -> str:
                calls.append(1)
                started.set()
                await release.wait()
                receipt = Receipt(request_sha256=A, answer={"said": "rated"})
                await outbox.put(
                    "evaluation",
                    {"level_code": 1},
                    tx_id=KEY,
                    priority_class=PriorityClass.TRANSACTION,
                    receipt=receipt,
                )
                return "rated"

            def run() -> asyncio.Task[str]:
                return asyncio.create_task(
                    keys.joined(
                        KEY,
                        A,
                        rate,
                        tx_kind="evaluation",
                        replay=lambda answer: f"replayed {answer['said']}",
                        recorded=lambda result: result == "rated",
                    )
                )

            first, retry = run(), run()
            await started.wait()
            with pytest.raises(IdempotencyConflict):  # another request under the same key
                await keys.joined(KEY, B, rate, tx_kind="evaluation", replay=str,
                                  recorded=bool)  # fmt: skip
            release.set()
            assert (await first, await retry) == ("rated", "rated")
            assert calls == [1]  # asked once
            assert await run() == "replayed rated"
            assert calls == [1]

    asyncio.run(scenario())


def test_a_joined_call_that_recorded_nothing_frees_its_key(tmp_path: Path) -> None:
    async def walked_away() -> str:
        return "timed_out"

    async def scenario() -> None:
        async with service(tmp_path) as keys:
            for digest in (A, B):  # B may take the key A left unused
                result = await keys.joined(
                    KEY, digest, walked_away, tx_kind="evaluation", replay=str,
                    recorded=lambda result: result == "rated",
                )  # fmt: skip
                assert result == "timed_out"

    asyncio.run(scenario())
