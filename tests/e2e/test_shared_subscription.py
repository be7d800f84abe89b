"""Two ``fleet-server`` workers in one MQTT share group, one PostgreSQL, one Mosquitto.

The broker hands each message of ``$share/{group}/govedge/v1/+/up/+`` to one worker,
round-robin per message, so every outlet's births, telemetry, transactions and wills are
split between the workers. What an operator sees must not depend on that: healthy
agents online with their telemetry stored and no rebirth requests, every transaction
acknowledged exactly once, a killed agent offline (its will reaches one worker only)
and online again after a restart (its new birth reaches one worker only), and a dead
outlet still offline when the workers lose the broker.

A worker restarted, or SIGKILLed, while the other one runs must not make the fleet
stale (the other worker still hears every outlet); both stopped must. What agents do
when one worker dies uncleanly (its will says the server is offline) is measured.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import func, select

import govedge_wire as wire
from fleet_server.db import make_engine
from fleet_server.models import Agent as AgentRow
from fleet_server.models import InboxEntry, IngestWorker
from govedge_testbed import Mosquitto, free_port
from tests.e2e.conftest import KEEPALIVE_S, Agent
from tests.server.helpers import FleetServer, mqtt_client, poll
from tests.server.txkit import TxAgent

pytestmark = pytest.mark.postgres

# The broker declares a client dead after 1.5 x keepalive; allow for scheduling noise.
WILL_DEADLINE_S = 1.5 * KEEPALIVE_S + 10
REJECTS = ("no_birth", "session_mismatch", "late_will", "after_death")
# Heartbeats (fleet_server.ingest.share_group) and the workers' own MQTT keepalive, short enough
# that a SIGKILLed worker's lease and its will run out within the test.
HEARTBEAT_S = 0.5
LEASE_S = 3.0
SERVER_KEEPALIVE_S = 5


class Downlink:
    """Counts what the servers send to outlets: rebirth commands and transaction acks."""

    def __init__(self, mqtt_url: str) -> None:
        self._lock = threading.Lock()
        self.rebirths: Counter[str] = Counter()
        self.acks: Counter[str] = Counter()
        self.ack_status: dict[str, str] = {}
        self.ack_session: dict[str, int] = {}
        self._client = mqtt_client(mqtt_url, name="downlink")
        subscribed = threading.Event()
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_args: subscribed.set()
        self._client.subscribe([("govedge/v1/+/down/cmd", 1), ("govedge/v1/+/down/txack", 1)])
        assert subscribed.wait(10)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        decoded = wire.decode(message.topic, bytes(message.payload))
        with self._lock:
            if isinstance(decoded, wire.Command) and decoded.name == "rebirth":
                self.rebirths[decoded.outlet_id] += 1
            elif isinstance(decoded, wire.TransactionAck):
                self.acks[decoded.tx_id] += 1
                self.ack_status[decoded.tx_id] = decoded.status
                self.ack_session[decoded.tx_id] = decoded.session

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "GOVEDGE_API_AUTH": "off",
        "GOVEDGE_PKI_DIR": str(tmp_path / "pki"),
        "GOVEDGE_MQTT_SHARE_GROUP": "fleet",
        "GOVEDGE_WORKER_HEARTBEAT_S": str(HEARTBEAT_S),
        "GOVEDGE_WORKER_LEASE_S": str(LEASE_S),
        "GOVEDGE_MQTT_KEEPALIVE_S": str(SERVER_KEEPALIVE_S),
    }


@pytest.fixture
def workers(
    private_broker: Mosquitto, postgres_url: str, tmp_path: Path
) -> Iterator[list[FleetServer]]:
    env = _env(tmp_path)
    servers = [_worker(private_broker, postgres_url, tmp_path, env) for _ in range(2)]
    try:
        for server in servers:  # one after the other: each upgrades the schema first
            server.start()
        yield servers
    finally:
        for server in servers:
            if server.proc is not None and server.proc.poll() is None:
                assert server.stop() == 0, server.stderr()


def _worker(
    broker: Mosquitto, postgres_url: str, tmp_path: Path, env: dict[str, str]
) -> FleetServer:
    return FleetServer(mqtt_url=broker.url, database_url=postgres_url, workdir=tmp_path, **env)


def _rejects(servers: list[FleetServer]) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for server in servers:
        for reason, count in server.stats()["rejected"].items():
            if reason in REJECTS:
                totals[reason] += count
    return dict(totals)


def _agents(broker: Mosquitto, tmp_path: Path, prefix: str, *names: str) -> list[Agent]:
    return [
        Agent(
            outlet_id=f"{prefix}-{name}-{uuid.uuid4().hex[:6]}",
            data_dir=tmp_path / "agents" / name,
            mqtt_url=broker.url,
            log=tmp_path / f"agent-{name}.log",
        )
        for name in names
    ]


def _later_ack_from_each_worker(downlink: Downlink, agent: TxAgent, workers: int) -> list[str]:
    """Positive marker: send marker transactions, one at a time, until each worker has
    acknowledged one. A worker publishes its acks in order, so whatever it sent for the
    earlier transactions has reached ``downlink`` by then. Returns the markers' tx ids."""
    markers: list[str] = []

    def acked_by_all() -> bool:
        acked = [t for t in markers if t in downlink.ack_session]
        if len(acked) == len(markers):
            if len({downlink.ack_session[t] for t in acked}) >= workers:
                return True
            markers.append(agent.tx("queue_event", {"kind": "ticket.issued"}))
        return False

    poll(acked_by_all, timeout=30, what="a later ack from each worker")
    return markers


def _beats(postgres_url: str) -> dict[str, tuple[bool, Any]]:
    """The workers' heartbeat rows: worker id -> (connected, beat_at)."""
    db = make_engine(postgres_url)
    try:
        with db.connect() as conn:
            rows = conn.execute(
                select(IngestWorker.worker_id, IngestWorker.connected, IngestWorker.beat_at)
            ).all()
    finally:
        db.dispose()
    return {row.worker_id: (row.connected, row.beat_at) for row in rows}


def _workers_went_round(postgres_url: str, *, running: int = 2, rounds: int = 3) -> None:
    """Positive marker: each of the ``running`` workers wrote ``rounds`` more heartbeats.

    A worker beats between batches in its one thread, so after three beats it has taken
    and processed (and written) everything that was queued when this was called.
    """
    seen: dict[str, set[Any]] = {w: {at} for w, (_c, at) in _beats(postgres_url).items()}
    started = set(seen)

    def went_round() -> bool:
        for worker, (_connected, at) in _beats(postgres_url).items():
            seen.setdefault(worker, set()).add(at)
        # Rows of workers that stopped beating (killed, stopped) are not waited for.
        live = [w for w in started if len(seen[w]) > 1]
        return len(live) >= running and all(len(seen[w]) > rounds for w in live)

    poll(went_round, timeout=30, what=f"{rounds} more heartbeats of each worker")


def _beat_after(postgres_url: str, at: Any, *, connected: bool) -> None:
    """Positive marker that the lease ran out: a worker (connected or not, as given)
    wrote its heartbeat after ``at``, so its own checks ran at that time."""
    poll(lambda: any(c == connected and beat > at for c, beat in _beats(postgres_url).values()),
         timeout=LEASE_S + 30, what="a heartbeat past the lease")  # fmt: skip


def _state_everywhere(servers: list[FleetServer], outlet_id: str, state: str) -> bool:
    return all((s.outlet(outlet_id) or {}).get("state") == state for s in servers)


def test_two_workers_in_a_share_group_agree_on_presence_telemetry_and_transactions(
    workers: list[FleetServer], private_broker: Mosquitto, postgres_url: str, tmp_path: Path
) -> None:
    downlink = Downlink(private_broker.url)
    agents = _agents(private_broker, tmp_path, "shared", "a", "b")
    tx_agent: TxAgent | None = None
    db = make_engine(postgres_url)
    try:
        for agent in agents:
            agent.start()
        poll(lambda: all(_state_everywhere(workers, a.outlet_id, "online") for a in agents),
             timeout=30, what="agents online on both workers")  # fmt: skip

        # Telemetry every 0.5 s from each agent: wait until both workers have taken a
        # good share of it (the split really happens), then look at what they did.
        poll(lambda: all(s.stats()["received"] >= 15 for s in workers), timeout=60,
             what="both workers receiving")  # fmt: skip
        assert _rejects(workers) == {}, [s.stats() for s in workers]
        assert sum(s.stats()["rebirths_requested"] for s in workers) == 0
        assert sum(downlink.rebirths.values()) == 0, downlink.rebirths
        for agent in agents:
            row = workers[0].outlet(agent.outlet_id)
            assert row is not None
            assert row["last_metrics"]
            assert row["last_metrics"]["cpu_percent"] >= 0

        # Transactions from one more outlet: each stored once and acknowledged once.
        tx_agent = TxAgent(private_broker.url, f"shared-tx-{uuid.uuid4().hex[:6]}")
        tx_agent.birth()
        tx_ids = [tx_agent.tx("queue_event", {"kind": "ticket.issued"}) for _ in range(20)]
        poll(lambda: all(downlink.acks[t] >= 1 for t in tx_ids), timeout=30, what="all acked")
        markers = _later_ack_from_each_worker(downlink, tx_agent, len(workers))
        assert {t: downlink.acks[t] for t in tx_ids} == dict.fromkeys(tx_ids, 1)
        assert {downlink.ack_status[t] for t in tx_ids} == {"accepted"}
        with db.connect() as conn:
            stored = conn.scalar(
                select(func.count()).select_from(InboxEntry)
                .where(InboxEntry.outlet_id == tx_agent.outlet_id)
            )  # fmt: skip
        assert stored == len(tx_ids) + len(markers)
        # The worker that missed the birth took it from the database (possibly after
        # waiting for the other worker's commit) instead of refusing the transactions.
        reloaded = sum(s.stats()["noted"].get("presence_reloaded", 0) for s in workers)
        assert reloaded >= 1, [s.stats() for s in workers]

        # A killed agent: its will reaches one worker; both show it offline, and stay so.
        killed, alive = agents
        first = workers[0].outlet(killed.outlet_id)
        assert first is not None
        killed.signal(signal.SIGKILL)
        killed.wait(timeout=5)
        poll(lambda: _state_everywhere(workers, killed.outlet_id, "offline"),
             timeout=WILL_DEADLINE_S, what="killed agent offline on both workers")  # fmt: skip
        _workers_went_round(postgres_url)  # many batches of both workers
        assert _state_everywhere(workers, killed.outlet_id, "offline")
        assert _state_everywhere(workers, alive.outlet_id, "online")

        # Restarted: a new session whose birth reaches one worker only.
        killed.start()
        poll(lambda: (r := workers[1].outlet(killed.outlet_id)) and r["state"] == "online"
             and r["session"] == first["session"] + 1, timeout=30,
             what="restarted agent online in its new session")  # fmt: skip
        received = {s.url: s.stats()["received"] for s in workers}
        poll(lambda: all(s.stats()["received"] >= received[s.url] + 8 for s in workers),
             timeout=60, what="more telemetry on both workers")  # fmt: skip
        assert _rejects(workers) == {}, [s.stats() for s in workers]
        assert sum(downlink.rebirths.values()) == 0, downlink.rebirths
        assert _state_everywhere(workers, killed.outlet_id, "online")

        # The other agent dies too; then the broker goes away under both workers. Each
        # worker makes what it holds online stale, but the worker that did not get the
        # will still holds that outlet online in memory: it must not write it back.
        alive.signal(signal.SIGKILL)
        alive.wait(timeout=5)
        poll(lambda: _state_everywhere(workers, alive.outlet_id, "offline"),
             timeout=WILL_DEADLINE_S, what="second killed agent offline")  # fmt: skip
        private_broker.kill()
        poll(lambda: _state_everywhere(workers, killed.outlet_id, "stale"), timeout=15,
             what="the live outlet stale on both workers")  # fmt: skip
        poll(lambda: _state_everywhere(workers, tx_agent.outlet_id, "stale"), timeout=15,
             what="the tx outlet stale on both workers")  # fmt: skip
        _workers_went_round(postgres_url)  # both workers' broker-loss batches are written
        assert _state_everywhere(workers, alive.outlet_id, "offline")
        assert _state_everywhere(workers, tx_agent.outlet_id, "stale")
    finally:
        for agent in agents:
            agent.stop()
        if tx_agent is not None:
            tx_agent.close()
        downlink.close()
        db.dispose()


class Watcher:
    """Records what every agent and worker says: births per outlet and server states."""

    def __init__(self, mqtt_url: str) -> None:
        self._lock = threading.Lock()
        self.births: Counter[str] = Counter()
        self.states: list[tuple[bool, int]] = []  # (online, ts), in arrival order
        self._client = mqtt_client(mqtt_url, name="watcher")
        subscribed = threading.Event()
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_args: subscribed.set()
        self._client.subscribe([("govedge/v1/+/up/birth", 1), (wire.SERVER_STATE_TOPIC, 1)])
        assert subscribed.wait(10)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        decoded = wire.decode(message.topic, bytes(message.payload))
        with self._lock:
            if isinstance(decoded, wire.Birth):
                self.births[decoded.outlet_id] += 1
            elif isinstance(decoded, wire.ServerState):
                self.states.append((decoded.online, decoded.ts))

    def births_of(self, outlet_ids: list[str]) -> dict[str, int]:
        with self._lock:
            return {outlet_id: self.births[outlet_id] for outlet_id in outlet_ids}

    def latest_online(self) -> int:
        with self._lock:
            return max(ts for online, ts in self.states if online)

    def saw_offline(self, ts: int) -> bool:
        with self._lock:
            return (False, ts) in self.states

    def offline_states(self) -> int:
        with self._lock:
            return sum(1 for online, _ts in self.states if not online)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _stored(postgres_url: str, outlet_ids: list[str]) -> dict[str, tuple[str, Any]]:
    """What the database holds: outlet -> (state, state_since)."""
    db = make_engine(postgres_url)
    try:
        with db.connect() as conn:
            rows = conn.execute(
                select(AgentRow.outlet_id, AgentRow.state, AgentRow.state_since)
                .where(AgentRow.outlet_id.in_(outlet_ids))
            ).all()  # fmt: skip
    finally:
        db.dispose()
    return {row.outlet_id: (row.state, row.state_since) for row in rows}


def _states(stored: dict[str, tuple[str, Any]]) -> set[str]:
    return {state for state, _since in stored.values()}


def test_one_worker_restarted_or_killed_keeps_the_fleet_online_both_stopped_make_it_stale(
    workers: list[FleetServer], private_broker: Mosquitto, postgres_url: str, tmp_path: Path
) -> None:
    watcher = Watcher(private_broker.url)
    agents = _agents(private_broker, tmp_path, "roll", "a", "b", "c")
    ids = [agent.outlet_id for agent in agents]
    env = _env(tmp_path)
    try:
        for agent in agents:
            agent.start()
        poll(lambda: all(_state_everywhere(workers, i, "online") for i in ids), timeout=30,
             what="agents online on both workers")  # fmt: skip
        before = _stored(postgres_url, ids)
        births = watcher.births_of(ids)
        assert births == dict.fromkeys(ids, 1), births
        offline_before = watcher.offline_states()

        # Rolling restart of worker 0 (SIGTERM, start again). Worker 1 holds the fleet:
        # no stale in the database at any point (state_since would have moved), no
        # offline server state, and so no rebirth from any agent.
        assert workers[0].stop() == 0, workers[0].stderr()
        # Worker 1 beats on past the time worker 0's row would have aged out of its lease.
        _beat_after(postgres_url, datetime.now(UTC) + timedelta(seconds=LEASE_S + 1),
                    connected=True)  # fmt: skip
        assert all(workers[1].outlet(i)["state"] == "online" for i in ids)  # type: ignore[index]
        assert _stored(postgres_url, ids) == before
        workers[0] = _worker(private_broker, postgres_url, tmp_path, env)
        workers[0].start()
        received = workers[0].stats()["received"]
        poll(lambda: workers[0].stats()["received"] >= received + 10, timeout=30,
             what="the restarted worker takes its share")  # fmt: skip
        assert all(_state_everywhere(workers, i, "online") for i in ids)
        assert _stored(postgres_url, ids) == before
        assert watcher.offline_states() == offline_before
        assert watcher.births_of(ids) == births
        assert _rejects(workers) == {}, [s.stats() for s in workers]

        # Worker 0 SIGKILLed: no clean stop, no heartbeat any more. Worker 1 keeps every
        # outlet online, in its API and in the database, past the dead worker's lease.
        assert workers[0].proc is not None
        workers[0].proc.send_signal(signal.SIGKILL)
        workers[0].proc.wait(timeout=5)
        workers[0].http.close()
        # Its will (after 1.5 x its keepalive) sets the retained server state offline:
        # Mosquitto wills cannot depend on the other workers.
        poll(lambda: watcher.offline_states() > offline_before,
             timeout=1.5 * SERVER_KEEPALIVE_S + 10, what="the killed worker's will")  # fmt: skip
        _beat_after(postgres_url, datetime.now(UTC) + timedelta(seconds=LEASE_S + 1),
                    connected=True)  # fmt: skip
        assert all(workers[1].outlet(i)["state"] == "online" for i in ids)  # type: ignore[index]
        assert _stored(postgres_url, ids) == before
        # Agents take the offline state as it is and send nothing for it...
        assert watcher.births_of(ids) == births
        # ...until a worker next connects: its online state makes every agent send one
        # fresh birth (and resend its unacknowledged transactions). That is the cost.
        workers[0] = _worker(private_broker, postgres_url, tmp_path, env)
        workers[0].start()
        poll(lambda: watcher.births_of(ids) == {i: births[i] + 1 for i in ids}, timeout=30,
             what="one rebirth per agent after the killed worker's will")  # fmt: skip
        _workers_went_round(postgres_url)  # a second rebirth would be sent by now...
        # ...and reach the watcher before the agents' next telemetry reaches a worker.
        received = sum(s.stats()["received"] for s in workers)
        poll(lambda: sum(s.stats()["received"] for s in workers) >= received + 2 * len(ids),
             timeout=30, what="more telemetry from the agents")  # fmt: skip
        assert watcher.births_of(ids) == {i: births[i] + 1 for i in ids}
        assert _states(_stored(postgres_url, ids)) == {"online"}
        births = watcher.births_of(ids)

        # Both stopped, one after the other: the first leaves the fleet online to the
        # second (and the server state online); the last one marks it stale and says
        # offline.
        offline_before = watcher.offline_states()
        assert workers[0].stop() == 0, workers[0].stderr()
        assert _states(_stored(postgres_url, ids)) == {"online"}
        assert watcher.offline_states() == offline_before
        assert workers[1].stop() == 0, workers[1].stderr()
        assert _states(_stored(postgres_url, ids)) == {"stale"}
        poll(lambda: watcher.offline_states() > offline_before, timeout=10,
             what="the last worker's offline state")  # fmt: skip

        # Both SIGKILLed (nobody marks): the next worker to start finds no live peer
        # (the dead rows are ignored until they beat again, which they never do) and
        # marks the fleet stale before it hears anyone.
        workers[0] = _worker(private_broker, postgres_url, tmp_path, env)
        workers[1] = _worker(private_broker, postgres_url, tmp_path, env)
        workers[0].start()
        workers[1].start()
        poll(lambda: _states(_stored(postgres_url, ids)) == {"online"}, timeout=30,
             what="agents online again")  # fmt: skip
        for server in workers:
            assert server.proc is not None
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait(timeout=5)
            server.http.close()
        online = _stored(postgres_url, ids)
        assert _states(online) == {"online"}  # nobody was left to mark them
        workers[0] = _worker(private_broker, postgres_url, tmp_path, env)
        workers[0].start()
        poll(lambda: all(
            (row := _stored(postgres_url, [i])[i])[0] != "online" or row[1] > online[i][1]
            for i in ids), timeout=30, what="the fleet marked stale at start")  # fmt: skip
        logs = workers[0].stderr_path.read_text(errors="replace")
        assert "no other worker connected" in logs, logs[-4000:]
    finally:
        for agent in agents:
            agent.stop()
        watcher.close()


class CuttableProxy:
    """A TCP forwarder to the broker that can cut its connections and stop listening.

    One worker connects through it, so that worker alone loses the broker while the
    other keeps its connection; while cut, its reconnects are refused at TCP level.
    """

    def __init__(self, upstream_port: int) -> None:
        self.port = free_port()
        self._upstream = upstream_port
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        """Listen again (on the same port)."""
        listener = socket.create_server(("127.0.0.1", self.port))
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _addr = listener.accept()
            except OSError:
                return  # closed by cut()
            try:
                upstream = socket.create_connection(("127.0.0.1", self._upstream), timeout=5)
            except OSError:
                conn.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [conn, upstream]
            for src, dst in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=_pump, args=(src, dst), daemon=True).start()

    def cut(self) -> None:
        """Stop listening and drop every connection."""
        if self._listener is not None:
            _close(self._listener)
            self._listener = None
        with self._lock:
            for sock in self._sockets:
                _close(sock)
            self._sockets.clear()

    def close(self) -> None:
        self.cut()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        _close(src)
        _close(dst)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def test_a_worker_cut_off_keeps_the_fleet_to_its_peer_and_sweeps_once_the_peer_is_gone(
    private_broker: Mosquitto, postgres_url: str, tmp_path: Path
) -> None:
    env = _env(tmp_path)
    watcher = Watcher(private_broker.url)
    proxy = CuttableProxy(int(private_broker.url.rsplit(":", 1)[1]))
    cut_off = FleetServer(
        mqtt_url=f"mqtt://127.0.0.1:{proxy.port}",
        database_url=postgres_url,
        workdir=tmp_path,
        **env,
    )
    holder = _worker(private_broker, postgres_url, tmp_path, env)
    (agent,) = _agents(private_broker, tmp_path, "cut", "a")
    ids = [agent.outlet_id]
    try:
        cut_off.start()
        holder.start()
        agent.start()
        poll(lambda: _state_everywhere([cut_off, holder], agent.outlet_id, "online"),
             timeout=30, what="agent online on both workers")  # fmt: skip
        before = _stored(postgres_url, ids)

        # One worker loses the broker; its peer still holds it: nothing becomes stale.
        proxy.cut()
        poll(lambda: not cut_off.stats()["broker_connected"], timeout=15,
             what="the cut-off worker notices")  # fmt: skip
        _beat_after(postgres_url, datetime.now(UTC) + timedelta(seconds=LEASE_S + 1),
                    connected=False)  # fmt: skip
        assert _stored(postgres_url, ids) == before
        assert cut_off.stats()["noted"].get("broker_lost_peers_connected", 0) >= 1

        # The peer is SIGKILLed and marks nothing; once its lease has run out, the
        # cut-off worker's heartbeat finds no worker holding the broker and sweeps.
        holder_ts = watcher.latest_online()  # the holder started last
        assert holder.proc is not None
        holder.proc.send_signal(signal.SIGKILL)
        holder.proc.wait(timeout=5)
        poll(lambda: _states(_stored(postgres_url, ids)) == {"stale"}, timeout=LEASE_S + 15,
             what="the fleet swept stale")  # fmt: skip
        assert cut_off.stats()["noted"].get("fleet_swept_stale", 0) >= 1

        # Back on the broker, the worker hears the outlet again. Its reconnect carries a
        # newer server state than the killed worker's will (which the agent saw), so the
        # agent answers with a fresh birth instead of ignoring it as older.
        births = watcher.births_of(ids)
        poll(lambda: watcher.saw_offline(holder_ts), timeout=1.5 * SERVER_KEEPALIVE_S + 10,
             what="the killed worker's will")  # fmt: skip
        proxy.restore()
        poll(lambda: _states(_stored(postgres_url, ids)) == {"online"}, timeout=60,
             what="online again through the reconnected worker")  # fmt: skip
        poll(lambda: watcher.births_of(ids) == {agent.outlet_id: births[agent.outlet_id] + 1},
             timeout=30, what="the agent's fresh birth")  # fmt: skip
    finally:
        agent.stop()
        for server in (cut_off, holder):
            if server.proc is not None and server.proc.poll() is None:
                assert server.stop() == 0, server.stderr()
            server.http.close()
        proxy.close()
        watcher.close()
