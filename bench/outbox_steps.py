"""Where the outbox sender's time goes: one drain, timed per step, in one process.

The real ``Outbox`` and ``OutboxSender`` drain a backlog through aiomqtt into a real
Mosquitto, the downlink wired as in ``edge_agent/uplink/session.py`` (acks to ``ack_soon``);
a fake fleet server (paho, ``outbox_drain.AckingServer``) acks every transaction. The
time spent in ``next_batch``, ``mark_sent``, each publish (until its PUBACK) and
``apply_acks`` is summed. Variants, same run: the agent's socket options
(``TCP_NODELAY``, as the daemon sets them) or the library default (Nagle on), and
bookkeeping commits with ``synchronous=NORMAL`` (as shipped) or forced to FULL. The fake
server shares this process (and its GIL), so the rates are lower than the real agent's
in ``outbox_drain.py``; compare the variants with each other.

    python bench/outbox_steps.py [--backlog N]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table
from outbox_drain import EVALUATION, AckingServer

import edge_agent.outbox.schema as schema
from edge_agent.outbox import Outbox, OutboxSender, PriorityClass
from govedge_testbed import Mosquitto
from govedge_wire import Kind, TransactionAck, decode, encode, topic_for

OUTLET = "steps-outlet"


@contextlib.contextmanager
def bookkeeping_forced_full(force: bool) -> Iterator[None]:
    """Make every outbox commit FULL (what the sender cost before NORMAL bookkeeping)."""
    original = schema.transaction

    def always_full(conn: Any, *, durable: bool = True) -> Any:
        return original(conn)

    if force:
        schema.transaction = always_full
    try:
        yield
    finally:
        schema.transaction = original


def timed(totals: dict[str, list[float]], name: str, fn: Callable[..., Awaitable[Any]]) -> Any:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            totals[name].append(time.perf_counter() - t0)

    return wrapper


async def drain(port: int, work: Path, n: int, *, nodelay: bool) -> dict[str, Any]:
    totals: dict[str, list[float]] = collections.defaultdict(list)
    async with Outbox(work / "o.db", key_path=work / "o.key", quota_bytes=2**31) as outbox:
        for i in range(n):
            await outbox.put("evaluation", {**EVALUATION, "evaluated_ts": i},
                             priority_class=PriorityClass.TRANSACTION)  # fmt: skip
        for name in ("next_batch", "mark_sent", "apply_acks"):
            setattr(outbox, name, timed(totals, name, getattr(outbox, name)))
        options = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)] if nodelay else []
        async with aiomqtt.Client("127.0.0.1", port, identifier=OUTLET, socket_options=options,
                                  protocol=aiomqtt.ProtocolVersion.V5,
                                  max_inflight_messages=64) as client:  # fmt: skip
            client.pending_calls_threshold = 1000
            await client.subscribe(topic_for(OUTLET, Kind.TRANSACTION_ACK), qos=1)
            seq = iter(range(10**9))

            async def publish(message: Any) -> None:
                await client.publish(topic_for(OUTLET, Kind.TRANSACTION), encode(message), qos=1)

            sender = OutboxSender(
                outbox, timed(totals, "publish", publish), rate_per_s=10_000, burst=10_000,
                make_message=lambda tx: tx.to_message(outlet_id=OUTLET, session=1, seq=next(seq)),
            )  # fmt: skip
            t0 = time.perf_counter()
            task = asyncio.create_task(sender.run())
            acked = 0
            async for message in client.messages:
                ack = decode(message.topic.value, bytes(message.payload))
                assert isinstance(ack, TransactionAck)
                sender.ack_soon(ack)
                acked += 1
                if acked >= n:
                    break
            await sender.acks_applied(10)
            elapsed = time.perf_counter() - t0
            sender.stop()
            await task
    return {"rate": n / elapsed, **{k: (len(v), sum(v) / len(v) * 1000) for k, v in totals.items()}}


async def put_rate(work: Path, *, backlog: int, puts: int = 300) -> float:
    """put/s (fsynced, quota checked) into an outbox already holding ``backlog`` entries.

    The backlog goes in by plain SQL in one transaction (its bodies are never read), so
    only the puts are timed: the clerk's 202 at an outlet that was offline for days.
    """
    async with Outbox(work / "o.db", key_path=work / "o.key", quota_bytes=2**31) as outbox:
        store = outbox._store
        assert store is not None

        def prefill() -> None:
            with schema.transaction(store.conn):
                store.conn.executemany(
                    "INSERT INTO entries (tx_id, tx_kind, priority_class, created_ms,"
                    " next_due_ms, nonce, ciphertext, stored_bytes)"
                    " VALUES (?, 'evaluation', 1, 0, 0, ?, ?, 628)",
                    [(f"pre-{i:08d}", os.urandom(12), os.urandom(616)) for i in range(backlog)],
                )

        await outbox._run(prefill)
        t0 = time.perf_counter()
        for i in range(puts):
            await outbox.put("evaluation", {**EVALUATION, "evaluated_ts": i},
                             priority_class=PriorityClass.TRANSACTION)  # fmt: skip
        return puts / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backlog", type=int, default=5000)
    ap.add_argument("--put-backlog", type=int, default=20_000)
    args = ap.parse_args()
    print(machine())
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-steps-") as tmp:
        broker = Mosquitto(workdir=Path(tmp) / "broker")
        broker.start()
        server = AckingServer(broker.port)
        try:
            for nodelay, full in ((True, False), (False, False), (True, True)):
                work = Path(tempfile.mkdtemp(dir=tmp))
                with bookkeeping_forced_full(full):
                    r = asyncio.run(drain(broker.port, work, args.backlog, nodelay=nodelay))
                rows.append([
                    "on (shipped)" if nodelay else "off (Nagle)",
                    "FULL (forced)" if full else "NORMAL (shipped)",
                    r["rate"], *(r.get(k, (0, 0.0))[1] for k in
                                 ("publish", "mark_sent", "apply_acks", "next_batch")),
                    r.get("mark_sent", (0, 0))[0], r.get("apply_acks", (0, 0))[0],
                ])  # fmt: skip
        finally:
            server.close()
            broker.stop()
        put_rows = []
        for backlog in (0, args.put_backlog):
            rate = asyncio.run(put_rate(Path(tempfile.mkdtemp(dir=tmp)), backlog=backlog))
            put_rows.append([backlog, rate])
    print(table(["backlog (entries pending)", "put/s (fsync each)"], put_rows))
    print()
    print(table(["TCP_NODELAY", "bookkeeping sync", "drain tx/s", "publish→PUBACK ms",
                 "mark_sent ms", "apply_acks ms", "next_batch ms", "mark_sent commits",
                 "ack commits"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
