"""Outbox drain and clerk → upstream latency (issues 4 and 17).

Part 1, drain: a 72-hour backlog of a busy outlet (default 20,000 transactions: ~280 an
hour) is put into the agent's outbox (``edge_agent.outbox.Outbox``, the same data
directory the agent then opens) while no broker runs. Then the broker starts, a fake
fleet server (paho: acks every ``tx`` ``accepted``, many to a ``txacks`` message as the
real server does for a sender that asks) subscribes, and the
real ``edge-agent run`` starts with ``--outbox-rate`` at its maximum (10,000/s) so the
drain is limited by the agent, not by the token bucket. Drain rate = acked transactions
/ time from the first ``tx`` to the last ack. In the same run, on the same broker, the
raw rate at which Mosquitto accepts QoS 1 messages of the same size from aiomqtt (the
agent's client library): one in flight (publish, await PUBACK) and 64 in flight (the
agent's MQTT window, ``MQTT_INFLIGHT``); and the rate of a bare aiomqtt client speaking
the agent's protocol without an outbox (with the agent's windows: 256 ``tx`` awaiting
the fake server's ``txack``, 64 of them awaiting a PUBACK): the ceiling for any
sender on aiomqtt here. The fake server checks that the backlog arrived in order, each once.
CPU per transaction is counted for the agent, the broker and the fake server (its paho
thread, Nagle off like the fleet server's client) from the first ``tx`` to the last ack:
the three share the machine's cores, so a costly fake server would bound the rate too.
Then the same backlog is drained once more through the real ``fleet-server run`` (SQLite,
its per-outlet rate limit raised to the agent's): stored in order, each once, acked
``accepted`` (a subscriber on the outlet's ``down/txack`` counts the acks and their
messages), with the agent's and the server's CPU per transaction. Last, that stored
backlog (pending: the server had no upstream) is delivered by the server restarted with
an HTTP upstream, as when a province platform comes back after an outage: deliveries/s
from the first arrival to the last, the server's CPU per delivery, each case once.

Part 2, latency: ``--clerk-outlets`` (10) real agents, each its own outlet, the real
``fleet-server run`` (GOVEDGE_API_AUTH=off, SQLite or with ``--postgresql`` the
testbed's PostgreSQL, a routing targets file and catalogue
as in tests/server/test_routing.py), a local HTTP upstream (govedge_testbed/upstream.py,
timestamps added here) and ``--outlets`` (10,000) simulated outlets sending telemetry
every ``--telemetry-period`` s (``fleet_ingest.simulator``). Clerks post ``POST
/v1/submissions`` at ``--rate`` (50/s) in total, round robin over the agents; latency =
upstream receipt − the clerk's send.

    python bench/outbox_drain.py [--quick] [--write-doc] [--json FILE] [--postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import shutil
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _clerk_load import (  # noqa: E402
    BackgroundFleet,
    ClerkOutlet,
    clerk_load,
    start_clerk_outlets,
    stop_clerk_outlets,
)
from _common import (  # noqa: E402
    ProcSampler,
    TunedMosquitto,
    machine,
    median,
    pct,
    poll,
    raise_nofile,
    start_agent,
    start_server,
    stop,
    table,
    update_doc,
)
from _figures import Figure, write_figures  # noqa: E402

from edge_agent.outbox import Outbox, PriorityClass  # noqa: E402
from edge_agent.outbox.sender import DEFAULT_WINDOW, MQTT_INFLIGHT  # noqa: E402
from govedge_testbed import Mosquitto, Postgres, free_port  # noqa: E402
from govedge_testbed.upstream import (  # noqa: E402
    Upstream,
    catalogue_rows,
    write_targets,
)

EVALUATION = {
    "level_code": 5,
    "channel": "4",
    "window": "W3",
    "evaluated_ts": 0,
    "tags": ["态度好"],
    "case_number": "C-1",
    "clerk": "S007",
    "item_code": "000101",
    "text": "x" * 200,
}


async def fill(data_dir: Path, n: int) -> float:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    t0 = time.monotonic()
    async with Outbox(
        data_dir / "outbox.db", key_path=data_dir / "outbox.key", quota_bytes=2 * 1024**3
    ) as outbox:
        for i in range(n):
            await outbox.put(
                "evaluation",
                # 1 = 非常满意 under GB/T 39046; one in twenty 5 = 非常不满意, which opens a
                # rectification ticket at the server (a pessimistic share of 差评).
                {**EVALUATION, "evaluated_ts": i, "level_code": 5 if i % 20 == 0 else 1},
                priority_class=PriorityClass.TRANSACTION,
                tx_id=f"backlog-{i:08d}",
            )
    return n / (time.monotonic() - t0)


class AckingServer:
    """A fake fleet server: acks every transaction (paho, its own network thread).

    Like the fleet server, it answers transactions sent with ``batch_ack`` many to a
    message: an acking thread takes whatever arrived while it published the previous
    acks and sends them as one ``txacks`` per outlet (at most 128 each), as the real
    ingest acks what one batch stored. Others (the bare client below) get a ``txack``
    each.
    """

    def __init__(self, port: int) -> None:
        self.first_tx: float | None = None
        self.last_ack: float | None = None
        self.acked: set[str] = set()
        self.first_seen: list[str] = []  # tx ids in the order they first arrived
        self.tx_msgs = 0
        self.ack_msgs = 0
        self.payload_sizes: list[int] = []
        self.seq = 0
        self._lock = threading.Lock()
        self._pending: list[tuple[str, str, bool]] = []  # (outlet, tx_id, batch_ack)
        self._wake = threading.Event()
        self._stopping = False
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="fake-server", protocol=mqtt.MQTTv5
        )
        self.c.on_connect = lambda cl, *_a: cl.subscribe("govedge/v1/+/up/tx", qos=1)
        self.c.on_message = self._on_message
        # As the fleet server's client (fleet_server/ingest/client.py): Nagle off.
        self.c.on_socket_open = lambda _c, _u, sock: sock.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        self.c.connect("127.0.0.1", port)
        self.c.publish(
            "govedge/v1/_fleet/state",
            json.dumps(
                {
                    "schema_version": 1,
                    "kind": "state",
                    "msg_id": os.urandom(8).hex(),
                    "ts": time.time_ns() // 10**6,
                    "server_id": "fake",
                    "online": True,
                }
            ),
            qos=1,
            retain=True,
        )
        self._acker = threading.Thread(target=self._ack_loop, name="fake-acker", daemon=True)
        self._acker.start()
        self.c.loop_start()

    def _on_message(self, _c: Any, _u: Any, m: Any) -> None:
        now = time.monotonic()
        self.first_tx = self.first_tx or now
        self.tx_msgs += 1
        msg = json.loads(m.payload)
        if len(self.payload_sizes) < 100:
            self.payload_sizes.append(len(m.payload))
        with self._lock:
            self._pending.append((msg["outlet_id"], msg["tx_id"], bool(msg.get("batch_ack"))))
        self._wake.set()

    def _ack_loop(self) -> None:
        while not self._stopping:
            self._wake.wait(0.5)
            self._wake.clear()
            with self._lock:
                pending, self._pending = self._pending, []
            batched: dict[str, list[str]] = {}
            for outlet, tx_id, batch_ack in pending:
                if batch_ack:
                    batched.setdefault(outlet, []).append(tx_id)
                else:
                    self._publish_ack(outlet, "txack", {"tx_id": tx_id, "status": "accepted"})
            for outlet, tx_ids in batched.items():
                for start in range(0, len(tx_ids), 128):
                    chunk = tx_ids[start : start + 128]
                    entries = [{"tx_id": t, "status": "accepted"} for t in chunk]
                    self._publish_ack(outlet, "txacks", {"acks": entries})
            now = time.monotonic()
            for _, tx_id, _ in pending:
                if tx_id not in self.acked:
                    self.first_seen.append(tx_id)
                self.acked.add(tx_id)
                self.last_ack = now

    def _publish_ack(self, outlet: str, kind: str, fields: dict[str, Any]) -> None:
        self.seq += 1
        self.ack_msgs += 1
        ack = {
            "schema_version": 1,
            "kind": kind,
            "msg_id": os.urandom(8).hex(),
            "ts": time.time_ns() // 10**6,
            "outlet_id": outlet,
            "session": 1,
            "seq": self.seq,
        } | fields
        self.c.publish(f"govedge/v1/{outlet}/down/txack", json.dumps(ack), qos=1)

    def cpu_s(self) -> float:
        """CPU seconds of paho's network thread and the acking thread."""
        thread = self.c._thread  # paho keeps no public handle on it
        idents = {self._acker.native_id, None if thread is None else thread.native_id}
        return sum(
            t.user_time + t.system_time for t in psutil.Process().threads() if t.id in idents
        )

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        self._acker.join(2)
        self.c.loop_stop()
        self.c.disconnect()


async def raw_qos1(port: int, n: int, size: int, window: int) -> tuple[float, float]:
    """(messages/s Mosquitto accepts (PUBACKed) from aiomqtt with ``window`` in flight,
    this process's CPU µs per message meanwhile: the publisher's, as the only thread)."""
    payload = b"x" * size
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=f"raw-{window}",
        protocol=aiomqtt.ProtocolVersion.V5,
        max_inflight_messages=max(20, window),
    ) as client:
        sem = asyncio.Semaphore(window)

        async def one(i: int) -> None:
            async with sem:
                await client.publish(f"govedge/v1/raw/up/tx/{i % 10}", payload, qos=1)

        t0, cpu0 = time.monotonic(), time.process_time()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.monotonic() - t0), (time.process_time() - cpu0) / n * 1e6


def _serve_acks(port: int, ready: Any, done: Any) -> None:
    """The fake server in a process of its own (for ``raw_app_acks``)."""
    server = AckingServer(port)
    ready.set()
    done.wait(600)
    server.close()


def raw_app_acks(port: int, n: int, size: int, window: int) -> tuple[float, float]:
    """(transactions/s, client CPU µs per transaction) of a bare aiomqtt client doing the
    agent's protocol without an outbox: ``tx`` QoS 1 with ``window`` awaiting the fake
    server's ``txack`` (received QoS 1, parsed), Nagle off as the agent's client; the
    fake server in a process of its own, as for the agent. The ceiling for any sender
    on aiomqtt here: it does twice the MQTT work of a publish alone."""
    ctx = multiprocessing.get_context("spawn")
    ready, done = ctx.Event(), ctx.Event()
    acker = ctx.Process(target=_serve_acks, args=(port, ready, done), daemon=True)
    acker.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the fake server for raw_app_acks did not start")
        time.sleep(0.3)  # its subscription
        return asyncio.run(_app_ack_client(port, n, size, window))
    finally:
        done.set()
        acker.join(5)
        if acker.is_alive():
            acker.kill()


async def _app_ack_client(port: int, n: int, size: int, window: int) -> tuple[float, float]:
    pad = "x" * max(0, size - 80)
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier="raw-app-acks",
        protocol=aiomqtt.ProtocolVersion.V5,
        max_inflight_messages=min(window, MQTT_INFLIGHT),
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    ) as client:
        await client.subscribe("govedge/v1/raw/down/txack", qos=1)
        room = asyncio.Semaphore(window)
        acked = 0
        all_acked = asyncio.Event()

        async def read_acks() -> None:
            nonlocal acked
            async for message in client.messages:
                json.loads(message.payload)  # type: ignore[arg-type]
                room.release()
                acked += 1
                if acked == n:
                    all_acked.set()

        reader = asyncio.create_task(read_acks())
        publishes = []
        t0, cpu0 = time.monotonic(), time.process_time()
        for i in range(n):
            await room.acquire()
            payload = json.dumps({"outlet_id": "raw", "tx_id": f"raw-{i:08d}", "body": pad})
            publishes.append(
                asyncio.create_task(client.publish("govedge/v1/raw/up/tx", payload, qos=1))
            )
        await asyncio.wait_for(all_acked.wait(), timeout=120)
        rate, us = n / (time.monotonic() - t0), (time.process_time() - cpu0) / n * 1e6
        await asyncio.gather(*publishes)
        reader.cancel()
        return rate, us


class AckCounter:
    """Counts the acks one outlet receives (a subscriber on its ``down/txack``): the
    messages, the transactions they ack, and when the last one came (wall clock)."""

    def __init__(self, port: int, outlet_id: str) -> None:
        self.messages = 0
        self.acked: dict[str, str] = {}  # tx_id -> status of its first ack
        self.repeated = 0
        self.last_at = 0.0
        self.reasons: set[str] = set()  # of acks other than accepted
        subscribed = threading.Event()
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="ack-counter", protocol=mqtt.MQTTv5
        )
        self.c.on_subscribe = lambda *_a: subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(f"govedge/v1/{outlet_id}/down/txack", qos=1)
        self.c.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the ack counter could not subscribe")

    def _on_message(self, _c: Any, _u: Any, m: Any) -> None:
        msg = json.loads(m.payload)
        entries = msg["acks"] if msg["kind"] == "txacks" else [msg]
        self.messages += 1
        for entry in entries:
            if entry["tx_id"] in self.acked:
                self.repeated += 1
            else:
                self.acked[entry["tx_id"]] = entry["status"]
            if entry["status"] != "accepted":
                self.reasons.add(str(entry.get("reason")))
        self.last_at = time.time()

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def server_drain(args: argparse.Namespace, work: Path, broker: Mosquitto) -> dict[str, Any]:
    """The same backlog drained through the real ``fleet-server run`` (SQLite): what an
    outlet coming back after an outage sees, with the server's own ack batching."""
    data_dir, outlet_id = work / "agent-server", "busy-outlet-server"
    asyncio.run(fill(data_dir, args.backlog))
    (work / "server-drain").mkdir()
    # The agent runs at 10,000/s here, far above the server's per-outlet limit (40/s,
    # twice the agent's default rate): the server's limit is raised to match.
    env = {
        "GOVEDGE_LOG_LEVEL": "WARNING",
        "GOVEDGE_INGEST_OUTLET_RATE_PER_S": "100000",
        "GOVEDGE_INGEST_OUTLET_BURST": "100000",
    }
    server = start_server(broker.url, work / "server-drain", env=env)
    counter = AckCounter(broker.port or 0, outlet_id)
    agent = None
    try:
        agent = start_agent(
            broker.url, outlet_id, data_dir, keepalive=30, extra=["--outbox-rate", "10000"]
        )
        procs = {"agent": psutil.Process(agent.pid), "server": psutil.Process(server.proc.pid)}
        # CPU from the first ack on (not the agent's start): the first stored batch is
        # left out of the CPU figures, and of nothing else.
        poll(lambda: counter.messages > 0, timeout=120, interval=0.01, what="first ack")
        cpu0 = {name: _cpu_s(p) for name, p in procs.items()}
        acked0 = len(counter.acked)
        poll(
            lambda: len(counter.acked) >= args.backlog,
            timeout=args.backlog / 20 + 120,
            interval=0.05,
            what="backlog drained through the fleet server",
        )
        cpu1 = {name: _cpu_s(p) for name, p in procs.items()}
        if set(counter.acked.values()) != {"accepted"}:
            raise RuntimeError(
                f"server drain: acked {sorted(set(counter.acked.values()))} ({counter.reasons})"
            )
        database = work / "server-drain" / "fleet.db"
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT tx_id, received_at FROM inbox ORDER BY id").fetchall()
        first = min(
            datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() for _, text in rows
        )
        tx_ids = [tx_id for tx_id, _ in rows]
        stats = server.stats()
        if tx_ids != sorted(tx_ids) or len(tx_ids) != args.backlog or stats["rejected"]:
            raise RuntimeError(
                f"server drain: {len(tx_ids)} stored, in order {tx_ids == sorted(tx_ids)}, "
                f"refused {stats['rejected']}"
            )
        drain_s = counter.last_at - first
        us = {name: (cpu1[name] - cpu0[name]) / (args.backlog - acked0) * 1e6 for name in cpu0}
        result = {
            "server_rate": args.backlog / drain_s,
            "server_acks_per_msg": len(counter.acked) / counter.messages,
            "server_repeated_acks": counter.repeated,
            "server_agent_us_tx": us["agent"],
            "server_server_us_tx": us["server"],
        }
        print(
            f"  through the fleet server: {result['server_rate']:,.0f} tx/s "
            f"({args.backlog:,} in {drain_s:.1f} s, stored in order, each acked accepted, "
            f"{result['server_acks_per_msg']:.1f} acks per message, {counter.repeated} "
            f"repeated); CPU µs per tx: agent {us['agent']:.0f}, server {us['server']:.0f}"
        )
        return result
    finally:
        stop(agent)
        counter.close()
        stop(server.proc)


def delivery_drain(args: argparse.Namespace, work: Path, broker: Mosquitto) -> dict[str, Any]:
    """The server drain's stored backlog, pending (no upstream was configured), delivered
    by a fleet server started on the same database with an upstream: what a province
    sees when its platform comes back after an outage. Timed from the first arrival
    upstream to the last; each must be accepted once."""
    upstream = TimedUpstream()
    upstream.start()
    targets = write_targets(work / "delivery-targets.json", upstream, ["hcp"])
    env = {"GOVEDGE_LOG_LEVEL": "WARNING", "GOVEDGE_UPSTREAM_TARGETS_FILE": str(targets)}
    server = start_server(broker.url, work / "server-drain", env=env)
    try:
        proc = psutil.Process(server.proc.pid)
        arrivals = upstream.arrivals
        poll(lambda: len(arrivals) > 0, timeout=60, interval=0.01, what="first delivery")
        cpu0, n0 = _cpu_s(proc), len(arrivals)
        poll(
            lambda: len(arrivals) >= args.backlog,
            timeout=args.backlog / 10 + 120,
            interval=0.05,
            what=f"backlog delivered upstream (arrived: {len(arrivals)})",
        )
        cpu_s = _cpu_s(proc) - cpu0
        times = sorted(arrivals.values())
        # A retry after a timeout meets its key and is answered 409 (the upstream's
        # idempotency): counted, not a failure. A case accepted twice would be.
        retried = sum(n - 1 for n in upstream.received.values())
        if len(arrivals) != args.backlog or len(upstream.accepted) != args.backlog:
            raise RuntimeError(
                f"delivery drain: {len(arrivals)} arrived, {len(upstream.accepted)} accepted"
            )
        result = {
            "delivery_rate": (len(times) - 1) / max(1e-9, times[-1] - times[0]),
            "delivery_server_us": cpu_s / max(1, args.backlog - n0) * 1e6,
        }
        print(
            f"  delivered upstream by a restarted server: {result['delivery_rate']:,.0f} tx/s "
            f"({args.backlog:,}, each accepted once, {retried} retried); server CPU µs per "
            f"delivery {result['delivery_server_us']:.0f}"
        )
        return result
    finally:
        stop(server.proc)
        upstream.stop()


def drain_run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    data_dir = work / "agent"
    fill_rate = asyncio.run(fill(data_dir, args.backlog))
    print(f"  filled {args.backlog:,} transactions ({fill_rate:,.0f} put/s, fsync each)")
    port = free_port()
    broker = Mosquitto(port=port, workdir=work / "broker")
    broker.start()
    agent = None
    try:
        server = AckingServer(port)
        time.sleep(0.3)
        t_start = time.monotonic()
        agent = start_agent(
            broker.url, "busy-outlet", data_dir, keepalive=30, extra=["--outbox-rate", "10000"]
        )
        sampler = ProcSampler(agent.pid)
        procs = {"agent": psutil.Process(agent.pid), "broker": psutil.Process(broker.pid or 0)}
        # CPU during the drain only (not the agent's start): marked at the first tx.
        poll(lambda: server.first_tx is not None, timeout=120, interval=0.01, what="first tx")
        sampler.mark()
        cpu0 = {name: _cpu_s(p) for name, p in procs.items()} | {"acker": server.cpu_s()}
        poll(
            lambda: len(server.acked) >= args.backlog,
            timeout=args.backlog / 20 + 120,
            interval=0.05,
            what="backlog drained",
        )
        cpu, rss = sampler.mark()
        cpu1 = {name: _cpu_s(p) for name, p in procs.items()} | {"acker": server.cpu_s()}
        assert server.first_tx is not None and server.last_ack is not None
        # The backlog went in as backlog-00000000, -00000001 ...: that order, each once.
        in_order = server.first_seen == sorted(server.first_seen)
        duplicates = server.tx_msgs - len(server.acked)
        if not in_order or duplicates:
            raise RuntimeError(f"drain out of order ({not in_order}) or {duplicates} duplicates")
        drain_s = server.last_ack - server.first_tx
        n = len(server.acked)
        # CPU µs per transaction (robust to a loaded machine, unlike the rates) of the
        # agent, the broker and the fake server's network thread, from the first tx to
        # the moment the last ack was seen (polled every 50 ms; they idle after it).
        us = {name: (cpu1[name] - cpu0[name]) / n * 1e6 for name in cpu0}
        drain = {
            "tx": n,
            "tx_msgs": server.tx_msgs,
            "ack_msgs": server.ack_msgs,
            "drain_s": drain_s,
            "rate": n / drain_s,
            "startup_s": server.first_tx - t_start,
            "agent_cpu": cpu,
            "agent_us_tx": us["agent"],
            "broker_us_tx": us["broker"],
            "acker_us_tx": us["acker"],
            "agent_rss": rss,
            "fill_rate": fill_rate,
            "size": int(median([float(s) for s in server.payload_sizes])),
        }
        stop(agent)
        agent = None
        server.close()
        size = drain["size"]
        drain["raw1"], _ = asyncio.run(raw_qos1(port, args.raw_n // 4, size, 1))
        broker0 = _cpu_s(procs["broker"])
        drain["raw64"], drain["raw_us_msg"] = asyncio.run(
            raw_qos1(port, args.raw_n, size, MQTT_INFLIGHT)
        )
        drain["raw_broker_us_msg"] = (_cpu_s(procs["broker"]) - broker0) / args.raw_n * 1e6
        drain["raw_acked"], drain["raw_acked_us"] = raw_app_acks(
            port, args.raw_n, size, DEFAULT_WINDOW
        )
        print(
            f"  drain {drain['rate']:,.0f} tx/s ({drain['tx']:,} in {drain_s:.1f} s, "
            f"{drain['tx_msgs']:,} tx messages, acked in {drain['ack_msgs']:,}); raw aiomqtt QoS 1 {drain['raw1']:,.0f}/s (1 in flight), "
            f"{drain['raw64']:,.0f}/s ({MQTT_INFLIGHT} in flight), {drain['raw_acked']:,.0f}/s with "
            f"{DEFAULT_WINDOW} awaiting the fake server's txack ({drain['raw_acked_us']:.0f} µs/tx); "
            f"agent CPU {cpu:.0f}% RSS {rss:.0f} MiB; "
            f"CPU µs per tx: agent {us['agent']:.0f}, broker {us['broker']:.0f}, fake "
            f"server {us['acker']:.0f} (raw publisher per message {drain['raw_us_msg']:.0f}, "
            f"broker {drain['raw_broker_us_msg']:.0f})"
        )
        drain |= server_drain(args, work, broker)
        drain |= delivery_drain(args, work, broker)
        return drain
    finally:
        stop(agent)
        broker.stop()


@dataclass
class TimedUpstream(Upstream):
    """The test upstream, noting when each Idempotency-Key first arrived (monotonic s)."""

    arrivals: dict[str, float] = field(default_factory=dict)

    def handle(self, handler: Any) -> None:  # type: ignore[override]
        key = handler.headers.get("Idempotency-Key", "")
        self.arrivals.setdefault(key, time.monotonic())
        super().handle(handler)


def latency_run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Clerks on ``args.clerk_outlets`` real agents while ``args.outlets`` simulated outlets
    send telemetry; latency = upstream arrival - the clerk's send."""
    raise_nofile()
    broker = TunedMosquitto(
        ["max_connections -1", "max_queued_messages 100000", "max_inflight_messages 0"],
        workdir=work / "broker2",
    )
    broker.start()
    upstream = TimedUpstream()
    upstream.start()
    server = fleet = None
    clerks: list[ClerkOutlet] = []
    # --postgresql: the province's database (docs/deploy.md) instead of SQLite's one
    # writer, which the telemetry's batches and the delivery's claims take in turn.
    pg = Postgres() if args.postgresql else None
    database_url = f"sqlite:///{work / 'fleet.db'}"
    try:
        if pg is not None:
            pg.start()
            database_url = pg.create_database("bench_latency")
        targets = write_targets(
            work / "targets.json", upstream, ["zhoushan", "hangzhou", "flaky", "dead", "hcp"]
        )
        server = start_server(
            broker.url,
            work,
            env={
                "GOVEDGE_UPSTREAM_TARGETS_FILE": str(targets),
                "GOVEDGE_DELIVERY_POLL_INTERVAL_S": "0.1",
                "GOVEDGE_LOG_LEVEL": "WARNING",
                **dict(item.split("=", 1) for item in args.server_env),
            },
            database_url=database_url,
        )
        r = httpx.post(
            f"{server.url}/api/v1/catalogue/import",
            content=json.dumps(catalogue_rows()),
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        r.raise_for_status()
        # The agents first: their local API ports are picked free before the simulator's
        # thousands of connections take ephemeral ports.
        clerks = start_clerk_outlets(broker.url, work, args.clerk_outlets)
        for o in clerks:
            poll(o.api_up, timeout=120, what=f"local API of {o.outlet_id}")
            poll(lambda o=o: server.state(o.outlet_id) == "online", timeout=120, what="online")
        t_fleet, before = time.monotonic(), server.stats()["accepted"]
        fleet = BackgroundFleet(broker.port, args.outlets) if args.outlets else None
        connected = fleet.wait_connected(600) if fleet else 0
        # The fleet's births are ingested before the clerks start (a birth storm is not
        # what this measures; fleet_ingest.py does).
        poll(
            lambda: _ingested(server.stats(), before + connected),
            timeout=600,
            interval=0.5,
            what="fleet births ingested",
        )
        ready_s = time.monotonic() - t_fleet
        server_proc = psutil.Process(server.proc.pid)
        if fleet:
            fleet.set_period(args.telemetry_period)
            time.sleep(min(5.0, args.telemetry_period))  # telemetry at its pace first
        # The server's CPU with telemetry alone, a second: subtracted below so that what
        # is left is the transactions' own cost.
        quiet_t, quiet_cpu = time.monotonic(), _cpu_s(server_proc)
        time.sleep(3.0)
        idle_cpu_rate = (_cpu_s(server_proc) - quiet_cpu) / (time.monotonic() - quiet_t)
        sent0 = fleet.counts()[0] if fleet else 0
        ingest0 = server.stats()["accepted"]
        cpu0 = _cpu_s(server_proc)
        t0 = time.monotonic()
        clerk = asyncio.run(
            clerk_load(clerks, rate=args.rate, samples=args.samples, tag=f"bench-{os.getpid()}")
        )
        arrivals = upstream.arrivals
        poll(
            lambda: all(k in arrivals for k in clerk.sent),
            timeout=120,
            interval=0.2,
            what=f"all {len(clerk.sent)} submissions upstream (arrived: {len(arrivals)})",
        )
        dt = time.monotonic() - t0
        server_cpu_s = _cpu_s(server_proc) - cpu0
        tx_cpu_ms = (server_cpu_s - idle_cpu_rate * dt) / len(clerk.sent) * 1000
        telemetry_rate = ((fleet.counts()[0] if fleet else 0) - sent0) / dt
        ingest_rate = (server.stats()["accepted"] - ingest0) / dt
        lat = [(arrivals[k] - t) * 1000 for k, t in clerk.sent.items()]
        stored = _received_at(database_url)
        # The way split where the server took the transaction in (its inbox row's
        # received_at: the ingest's receipt): clerk → server, and server → upstream.
        to_server = [(stored[k] - t) * 1000 for k, t in clerk.sent.items() if k in stored]
        to_upstream = [(arrivals[k] - stored[k]) * 1000 for k in clerk.sent if k in stored]
        if args.timeline is not None:  # [clerk send (monotonic s), total ms, to server ms]
            args.timeline.write_text(
                json.dumps(
                    [
                        [
                            t,
                            (arrivals[k] - t) * 1000,
                            (stored[k] - t) * 1000 if k in stored else None,
                        ]
                        for k, t in sorted(clerk.sent.items(), key=lambda kv: kv[1])
                    ]
                )
            )
        alerts = _alert_figures(server)
        res = {
            **alerts,
            "database": "PostgreSQL" if pg is not None else "SQLite",
            "n": len(lat),
            "rate": args.rate,
            "clerk_outlets": len(clerks),
            "outlets": connected,
            "telemetry_rate": telemetry_rate,
            "ingest_rate": ingest_rate,
            "ready_s": ready_s,
            "late_starts": clerk.late_starts,
            "p50": pct(lat, 50),
            "p99": pct(lat, 99),
            "max": max(lat),
            "accept_p50": pct(clerk.accept_ms, 50),
            "accept_p99": pct(clerk.accept_ms, 99),
            "to_server_p50": pct(to_server, 50),
            "to_server_p99": pct(to_server, 99),
            "to_upstream_p50": pct(to_upstream, 50),
            "to_upstream_p99": pct(to_upstream, 99),
            "server_cpu_pct": server_cpu_s / dt * 100,
            "tx_cpu_ms": tx_cpu_ms,
        }
        print(
            f"  clerk → upstream ({res['database']}) at {args.rate}/s over {len(clerks)} outlets, {connected:,} "
            f"simulated outlets sending {telemetry_rate:,.0f} telemetry/s (server accepted "
            f"{ingest_rate:,.0f}/s): p50 {res['p50']:.0f} ms, p99 {res['p99']:.0f} ms "
            f"(202 p50 {res['accept_p50']:.1f} ms, p99 {res['accept_p99']:.1f} ms); clerk → "
            f"server p50 {res['to_server_p50']:.0f} ms, p99 {res['to_server_p99']:.0f} ms; "
            f"server → upstream p50 {res['to_upstream_p50']:.0f} ms, p99 "
            f"{res['to_upstream_p99']:.0f} ms; server CPU {res['server_cpu_pct']:.0f} % of a "
            f"core, {tx_cpu_ms:.1f} ms per submission over its telemetry-only rate; alert passes {alerts['alert_passes']:.0f}, "
            f"{alerts['alert_pass_ms']:.0f} ms each on average, {alerts['alerts_open']:.0f} open"
        )
        return res
    finally:
        stop_clerk_outlets(clerks)
        if fleet is not None:
            fleet.close()
        if server is not None:
            stop(server.proc)
        upstream.stop()
        broker.stop()
        if pg is not None:
            pg.stop()


def _alert_figures(server: Any) -> dict[str, float]:
    """The server's alert passes so far (count, mean duration) and open alerts: the
    pass shares the server with the delivery, so its cost belongs next to the latency."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name in (
            "govedge_alerts_open",
            'govedge_db_latency_seconds_sum{op="alert_evaluation"}',
            'govedge_db_latency_seconds_count{op="alert_evaluation"}',
        ):
            values[name] = float(value)
    passes = values.get('govedge_db_latency_seconds_count{op="alert_evaluation"}', 0.0)
    total = values.get('govedge_db_latency_seconds_sum{op="alert_evaluation"}', 0.0)
    return {
        "alert_passes": passes,
        "alert_pass_ms": total / passes * 1000 if passes else 0.0,
        "alerts_open": values.get("govedge_alerts_open", 0.0),
    }


def _received_at(database_url: str) -> dict[str, float]:
    """Each inbox row's upstream Idempotency-Key → when the ingest received it, on this
    process's monotonic clock (UTC in the database; same machine, same wall clock)."""
    import sqlalchemy  # the server's own dependency: reads SQLite and PostgreSQL alike

    offset = time.time() - time.monotonic()
    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.connect() as db:
            rows = db.execute(
                sqlalchemy.text("SELECT idempotency_key, received_at FROM inbox")
            ).all()
    finally:
        engine.dispose()
    out: dict[str, float] = {}
    for key, value in rows:
        when = datetime.fromisoformat(value) if isinstance(value, str) else value
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        out[key] = when.timestamp() - offset
    return out


def _cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def _ingested(stats: dict[str, Any], accepted: int) -> bool:
    return int(stats["accepted"]) >= accepted and stats["queue_depth"] == 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--backlog", type=int)
    ap.add_argument("--write-doc", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--outlets", type=int, help="simulated outlets sending telemetry (part 2)")
    ap.add_argument("--clerk-outlets", type=int, default=10, help="real agents with clerks")
    ap.add_argument("--rate", type=float, default=50, help="submissions/s over all clerks")
    ap.add_argument("--seconds", type=float, help="how long the clerks submit")
    ap.add_argument("--telemetry-period", type=float, default=30, help="s between telemetry")
    ap.add_argument(
        "--postgresql", action="store_true", help="the latency part's server on PostgreSQL"
    )
    ap.add_argument("--json", type=Path, help="write the figures here (bench/_figures.py)")
    ap.add_argument(
        "--timeline", type=Path, help="write each submission's send time and latencies (JSON)"
    )
    ap.add_argument(
        "--server-env", action="append", default=[], metavar="NAME=VALUE",
        help="an extra variable for the fleet server (e.g. GOVEDGE_ALERT_EVAL_INTERVAL_S=3600)",
    )  # fmt: skip
    args = ap.parse_args()
    bad = [item for item in args.server_env if "=" not in item]
    if bad:
        ap.error(f"--server-env takes NAME=VALUE, not {bad[0]!r}")
    q = args.quick
    args.backlog = args.backlog or (2_000 if q else 20_000)
    args.runs = args.runs or (1 if q else 3)
    args.raw_n = 4_000 if q else 20_000
    args.outlets = (2_000 if q else 10_000) if args.outlets is None else args.outlets
    args.samples = int(args.rate * (args.seconds or (15 if q else 60)))
    logging.getLogger("mqtt").setLevel(logging.ERROR)  # aiomqtt's "pending publish calls"
    print(machine())
    load_start = os.getloadavg()[0]
    drains, lats = [], []
    for run in range(args.runs):
        work = Path(tempfile.mkdtemp(prefix="bench-outbox-"))
        print(f"run {run + 1}/{args.runs} in {work}")
        try:
            drains.append(drain_run(args, work))
            if not args.skip_latency and (run == 0 or not q):
                lats.append(latency_run(args, work))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    m = lambda key, xs=drains: median([x[key] for x in xs])  # noqa: E731
    lines = [
        f"Backlog {args.backlog:,} transactions (evaluation bodies, {m('size'):.0f} B on the wire), "
        f"{len(drains)} run(s), medians. Machine load (1-min load average, 2 cores) "
        f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.",
        "",
        table(
            [
                "fill put/s (fsync each)",
                "agent start → first tx s",
                "drain tx/s",
                "raw aiomqtt QoS 1, 1 in flight /s",
                "raw aiomqtt QoS 1, 64 in flight /s",
                f"raw with {DEFAULT_WINDOW} awaiting txack /s",
                "drain / raw(64)",
                "drain / raw(1)",
                "drain / raw with txack",
                "agent CPU % (drain)",
                "agent CPU µs/tx",
                "broker / fake server CPU µs/tx",
                "raw publisher CPU µs/msg (with txack)",
                "agent RSS MiB",
            ],
            [
                [
                    m("fill_rate"),
                    m("startup_s"),
                    m("rate"),
                    m("raw1"),
                    m("raw64"),
                    m("raw_acked"),
                    m("rate") / m("raw64"),
                    m("rate") / m("raw1"),
                    m("rate") / m("raw_acked"),
                    m("agent_cpu"),
                    m("agent_us_tx"),
                    f"{m('broker_us_tx'):.0f} / {m('acker_us_tx'):.0f}",
                    f"{m('raw_us_msg'):.0f} ({m('raw_acked_us'):.0f})",
                    m("agent_rss"),
                ]
            ],
        ),
        "",
        "The same backlog through the real fleet server (SQLite; its per-outlet limit "
        "raised to the agent's 10,000/s):",
        "",
        table(
            [
                "drain tx/s",
                "drain / raw(64)",
                "acks per ack message",
                "agent CPU µs/tx",
                "server CPU µs/tx",
            ],
            [
                [
                    m("server_rate"),
                    m("server_rate") / m("raw64"),
                    m("server_acks_per_msg"),
                    m("server_agent_us_tx"),
                    m("server_server_us_tx"),
                ]
            ],
        ),
        "",
        "That backlog, stored and pending, delivered to an HTTP upstream by the server "
        "restarted with a target (a platform back after an outage; each case once):",
        "",
        table(
            ["delivered tx/s", "server CPU µs per delivery"],
            [[m("delivery_rate"), m("delivery_server_us")]],
        ),
        "",
        f"At the default `outbox_rate_per_s` of 20/s the same backlog takes "
        f"{args.backlog / 20 / 60:.0f} min by design (docs/outbox.md).",
    ]
    if lats:
        lines += [
            "",
            "Clerk → upstream (`POST /v1/submissions` → agent → broker → fleet server → HTTP upstream):",
            "",
            table(
                [
                    "rate /s",
                    "clerk outlets (agents)",
                    "simulated outlets",
                    "telemetry sent /s",
                    "server accepted /s",
                    "samples",
                    "p50 ms",
                    "p99 ms",
                    "max ms",
                    "202 p50 ms",
                    "202 p99 ms",
                    "→ server p50 / p99 ms",
                    "server → upstream p50 / p99 ms",
                    "server CPU % of a core",
                    "server CPU ms per submission",
                ],
                [
                    [
                        lats[0]["rate"],
                        lats[0]["clerk_outlets"],
                        lats[0]["outlets"],
                        m("telemetry_rate", lats),
                        m("ingest_rate", lats),
                        sum(x["n"] for x in lats),
                        m("p50", lats),
                        m("p99", lats),
                        max(x["max"] for x in lats),
                        m("accept_p50", lats),
                        m("accept_p99", lats),
                        f"{m('to_server_p50', lats):.0f} / {m('to_server_p99', lats):.0f}",
                        f"{m('to_upstream_p50', lats):.0f} / {m('to_upstream_p99', lats):.0f}",
                        m("server_cpu_pct", lats),
                        m("tx_cpu_ms", lats),
                    ]
                ],
            ),
        ]
    figures = [
        Figure("outbox.drain_tx_s", m("rate"), "tx/s", baseline=m("raw64"), goal=0.5,
               goal_on="ratio"),
    ]  # fmt: skip
    figures.append(
        # The same drain against the ceiling of the protocol on aiomqtt (no goal stated).
        Figure("outbox.drain_vs_app_acks_tx_s", m("rate"), "tx/s", baseline=m("raw_acked"))
    )
    figures.append(
        Figure("outbox.drain_cpu_us_per_tx", m("agent_us_tx"), "µs", baseline=m("raw_us_msg"),
               higher=False)
    )  # fmt: skip
    figures.append(
        # What an outlet back from an outage sees end to end: the server is the limit.
        Figure("outbox.drain_via_server_tx_s", m("server_rate"), "tx/s", baseline=m("raw64"))
    )
    figures.append(
        Figure("outbox.server_cpu_us_per_tx", m("server_server_us_tx"), "µs", higher=False)
    )
    figures.append(Figure("outbox.delivery_drain_tx_s", m("delivery_rate"), "tx/s"))
    figures.append(
        Figure("outbox.delivery_server_cpu_us", m("delivery_server_us"), "µs", higher=False)
    )
    if lats:
        figures.append(
            # The goal is stated at 10,000 outlets' telemetry (the quick run has 2,000).
            Figure(
                "clerk_upstream.p99_ms",
                m("p99", lats),
                "ms",
                higher=False,
                goal=150 if args.outlets >= 10_000 else None,
            )
        )
        figures.append(
            # The server's CPU for one submission (ingest, routing, delivery, result),
            # over what its telemetry alone costs: the figure a slow machine hides least.
            Figure("clerk_upstream.server_cpu_ms_per_tx", m("tx_cpu_ms", lats), "ms",
                   higher=False)
        )  # fmt: skip
    write_figures(args.json, figures)
    text = "\n".join(lines)
    print()
    print(text)
    if args.write_doc:
        update_doc(
            f"outbox_drain{'-quick' if q else ''}",
            f"### Results ({'--quick' if q else 'full'}, {time.strftime('%Y-%m-%d')}; {machine()})\n\n{text}",
        )


if __name__ == "__main__":
    main()
