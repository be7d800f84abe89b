"""Shared helpers for outbox tests: a fake clock, outbox factories, a fake server."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.outbox import Outbox, OutboxSender, OutgoingTx, PriorityClass
from govedge_wire import Kind, Transaction, TransactionAck, decode, encode, topic_for

OUTLET = "outlet-test-01"
START = 1_700_000_000.0


class FakeClock:
    """A clock that moves only when told to, or when the code under test sleeps on it."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def make_outbox(tmp: Path, *, clock: FakeClock | None = None, **kwargs: object) -> Outbox:
    options: dict[str, object] = {"quota_bytes": 50_000_000} | kwargs
    if clock is not None:
        options["clock"] = clock
    return Outbox(tmp / "outbox.db", key_path=tmp / "outbox.key", **options)  # type: ignore[arg-type]


@dataclass
class FakeServer:
    """Receives published transactions like the fleet server: decode, dedup by tx_id."""

    published: list[Transaction] = field(default_factory=list)
    stored: dict[str, Transaction] = field(default_factory=dict)
    seq: itertools.count[int] = field(default_factory=itertools.count)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def make_message(self, tx: OutgoingTx) -> Transaction:
        return tx.to_message(outlet_id=OUTLET, session=1, seq=next(self.seq))

    async def publish(self, message: Transaction) -> None:
        payload = encode(message)  # the real size check of the wire contract
        received = decode(topic_for(OUTLET, Kind.TRANSACTION), payload)
        assert isinstance(received, Transaction)
        self.published.append(received)
        self.arrived.set()

    async def wait_published(self, count: int) -> None:
        """Wait (at most 10 s) until ``count`` messages were published."""
        async with asyncio.timeout(10):
            while len(self.published) < count:
                await self.arrived.wait()
                self.arrived.clear()

    def ack_for(self, message: Transaction) -> TransactionAck:
        status = "duplicate" if message.tx_id in self.stored else "accepted"
        self.stored.setdefault(message.tx_id, message)
        return TransactionAck(
            outlet_id=OUTLET, session=1, seq=0, tx_id=message.tx_id, status=status
        )


def make_sender(
    outbox: Outbox, server: FakeServer, clock: FakeClock, **kwargs: object
) -> OutboxSender:
    options: dict[str, object] = {"rate_per_s": 1000.0, "burst": 1000} | kwargs
    return OutboxSender(
        outbox,
        server.publish,
        make_message=server.make_message,
        clock=clock,
        sleep=clock.sleep,
        **options,  # type: ignore[arg-type]
    )


async def put_many(outbox: Outbox, count: int, *, kind: str = "evaluation") -> list[str]:
    """Put ``count`` transactions ``{"n": 0..count-1}``; their ids in put order."""
    ids = []
    for n in range(count):
        stored = await outbox.put(kind, {"n": n}, priority_class=PriorityClass.TRANSACTION)
        ids.append(stored.tx_id)
    return ids
