"""Simulated outlets for the ingest benchmarks: many MQTT connections from a few processes.

Every outlet is its own TCP connection speaking MQTT 3.1.1 (bench/_mqtt_lite.py), five
devices in its birth (QoS 1) and their health in its telemetry (QoS 0, ~1 KB). One
process drives its share of the outlets on one epoll loop; ``Fleet`` starts several
such processes and adds up what they report, because one Python process reconnecting
10,000 clients was the limit of the broker-restart figure, not the server.

Connections are opened non-blocking, a window at a time per process (a blocking connect
stalls the whole loop once the broker's accept backlog is full), from source addresses
spread over 127.0.0.2–17: one source address has about 28,000 ephemeral ports towards
one broker port, fewer while the previous connections sit in TIME_WAIT.

Commands arrive on a pipe: ``period`` (seconds between one outlet's telemetry; 0 is
silent), ``count``, ``born``, ``reconnect`` (a new session each, birth on the server's
retained ``online``, as an agent does after a broker restart) and ``stop``.

One module, though past 400 lines: the outlet's messages, one process's connections
and loop, and the parent's handle on the processes change together.
"""

from __future__ import annotations

import contextlib
import errno
import json
import multiprocessing as mp
import os
import selectors
import socket
import time
from typing import Any

import _mqtt_lite as mq

from govedge_wire import SERVER_STATE_TOPIC

DEVICES = [
    ("idcard-1", "id_card_reader", "SAM-C35A"),
    ("ssc-1", "social_security_reader", "PCSC"),
    ("camera-1", "document_camera", "UVC"),
    ("pad-1", "evaluation_pad", "HCP-10"),
    ("printer-1", "ticket_printer", "ESC/POS"),
]
KEEPALIVE_S = 600
SOURCES = 16  # 127.0.0.2 .. 127.0.0.17
WINDOW = 256  # connects in flight per process
IP_BIND_ADDRESS_NO_PORT = 24  # Linux: pick the port at connect(), per destination


def birth_payload(outlet: str, session: int) -> bytes:
    devices = [
        {"device_id": d, "kind": k, "model": m, "state": "ready", "health": {"connected": True}}
        for d, k, m in DEVICES
    ]
    return json.dumps(
        {
            "schema_version": 1,
            "kind": "birth",
            "msg_id": os.urandom(16).hex(),
            "ts": time.time_ns() // 1_000_000,
            "outlet_id": outlet,
            "session": session,
            "seq": 0,
            "agent_version": "0.1.0-sim",
            "hostname": f"pc-{outlet}",
            "os": "Linux sim",
            "devices": devices,
            "config_version": None,
            "telemetry_interval_s": 30.0,
            "keepalive_s": KEEPALIVE_S,
            "rebirth": False,
        }
    ).encode()


_DEV_HEALTH = json.dumps(
    {
        d: {
            "state": "ready",
            "connected": True,
            "reads_ok": 120,
            "reads_failed": 1,
            "protocol_errors": 0,
            "timeouts": 0,
            "bad_frames": 0,
            "firmware": "1.2.3",
        }
        for d, _k, _m in DEVICES
    }
).replace('"reads_ok": 120', '"reads_ok": %d', 1)  # the ID-card reader counts up: one
# device's figures change in every message, the other four repeat theirs (as idle ones do)
TELEMETRY_TEMPLATE = (
    '{"schema_version":1,"kind":"telemetry","msg_id":"%032x","ts":%d,"outlet_id":"%s",'
    '"session":%d,"seq":%d,"metrics":{"cpu_percent":12.5,"mem_percent":41.0,'
    '"disk_percent":55.0,"uptime_s":86400,"outbox_depth_transaction":0,'
    '"outbox_oldest_age_s":0},"devices":' + _DEV_HEALTH + "}"
)

CLOSED, OPENING, CONNACK_WAIT, UP = 0, 1, 2, 3


class _Share:
    """One process's outlets: sockets, buffers and what each has sent."""

    def __init__(self, port: int, indices: range) -> None:
        self.port = port
        self.ids = [f"sim-{i:05d}" for i in indices]
        self.sources = [f"127.0.0.{2 + i % SOURCES}" for i in indices]
        m = len(self.ids)
        self.telemetry_topics = [f"govedge/v1/{o}/up/telemetry".encode() for o in self.ids]
        self.sessions = [int(time.time())] * m
        self.seqs = [0] * m
        self.socks: list[socket.socket | None] = [None] * m
        self.state = [CLOSED] * m
        self.inbuf = [bytearray() for _ in range(m)]
        self.outbuf = [bytearray() for _ in range(m)]
        self.last_tx = [0.0] * m
        self.born = [False] * m
        self.by_fd: dict[int, int] = {}
        self.sel = selectors.EpollSelector()
        self.to_open: list[int] = []
        self.in_flight = 0
        self.connected = 0
        self.after_restart = False
        self.last_birth = 0.0  # monotonic: one clock for all processes of this machine

    # -- connections --------------------------------------------------------------------

    def open_all(self) -> None:
        self.to_open = list(range(len(self.ids) - 1, -1, -1))  # popped from the end

    def _open_some(self) -> None:
        while self.to_open and self.in_flight < WINDOW:
            j = self.to_open.pop()
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((self.sources[j], 0))
            s.setblocking(False)
            err = s.connect_ex(("127.0.0.1", self.port))
            if err not in (0, errno.EINPROGRESS):
                s.close()
                self.to_open.insert(0, j)  # try again after the others
                return
            self.socks[j], self.state[j] = s, OPENING
            self.by_fd[s.fileno()] = j
            self.sel.register(s, selectors.EVENT_WRITE, j)
            self.in_flight += 1

    def _close(self, j: int) -> None:
        s = self.socks[j]
        if s is None:
            return
        if self.state[j] == UP:
            self.connected -= 1
        elif self.state[j] in (OPENING, CONNACK_WAIT):
            self.in_flight -= 1
        self.by_fd.pop(s.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(s)
        s.close()
        self.socks[j], self.state[j] = None, CLOSED
        self.inbuf[j].clear()
        self.outbuf[j].clear()

    def close_all(self, *, say_goodbye: bool) -> None:
        for j, s in enumerate(self.socks):
            if s is not None and say_goodbye and self.state[j] == UP:
                with contextlib.suppress(OSError):
                    s.send(mq.DISCONNECT)
            self._close(j)
        self.to_open.clear()

    # -- sending ------------------------------------------------------------------------

    def send(self, j: int, data: bytes) -> bool:
        s = self.socks[j]
        if s is None:
            return False
        self.last_tx[j] = time.monotonic()
        out = self.outbuf[j]
        if out:
            out += data
            return True
        try:
            n = s.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            self._close(j)
            return False
        if n < len(data):
            out += data[n:]
            self.sel.modify(s, selectors.EVENT_READ | selectors.EVENT_WRITE, j)
        return True

    def birth(self, j: int) -> None:
        self.born[j] = True
        self.last_birth = time.monotonic()
        self.seqs[j] = 0
        topic = f"govedge/v1/{self.ids[j]}/up/birth".encode()
        self.send(j, mq.publish(topic, birth_payload(self.ids[j], self.sessions[j]), qos=1,
                                packet_id=1))  # fmt: skip

    # -- the loop -----------------------------------------------------------------------

    def pump(self, timeout: float) -> None:
        self._open_some()
        for key, events in self.sel.select(timeout):
            j = key.data
            s = self.socks[j]
            if s is None:
                continue
            if self.state[j] == OPENING:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    self._close(j)
                    self.to_open.insert(0, j)
                    continue
                self.state[j] = CONNACK_WAIT
                self.sel.modify(s, selectors.EVENT_READ, j)
                self.send(j, mq.connect(self.ids[j], KEEPALIVE_S))
                continue
            if events & selectors.EVENT_WRITE:
                self._flush(j, s)
            if events & selectors.EVENT_READ:
                self._read(j, s)

    def _flush(self, j: int, s: socket.socket) -> None:
        out = self.outbuf[j]
        try:
            n = s.send(out)
        except BlockingIOError:
            return
        except OSError:
            self._close(j)
            return
        del out[:n]
        if not out:
            self.sel.modify(s, selectors.EVENT_READ, j)

    def _read(self, j: int, s: socket.socket) -> None:
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the broker closed the connection (it stopped, or refused us)
            self._close(j)
            return
        buf = self.inbuf[j]
        buf += data
        for kind, flags, body in mq.split(buf):
            if kind == mq.CONNACK and self.state[j] == CONNACK_WAIT:
                if body[1] != 0:
                    self._close(j)
                    return
                self.state[j] = UP
                self.in_flight -= 1
                self.connected += 1
                if self.after_restart:
                    self.send(j, mq.subscribe(1, SERVER_STATE_TOPIC, 1))
                else:
                    self.birth(j)
            elif kind == mq.PUBLISH:
                _topic, qos, packet_id, payload = mq.parse_publish(flags, body)
                if qos:
                    self.send(j, mq.puback(packet_id))
                if not self.born[j] and json.loads(payload).get("online") is True:
                    self.birth(j)

    def telemetry(self, j: int, msg_id: int) -> bool:
        if self.state[j] != UP:
            return False
        self.seqs[j] += 1
        seq = self.seqs[j]
        payload = TELEMETRY_TEMPLATE % (
            msg_id,
            time.time_ns() // 1_000_000,
            self.ids[j],
            self.sessions[j],
            seq,
            120 + seq,
        )
        return self.send(j, mq.publish(self.telemetry_topics[j], payload.encode()))

    def keep_alive(self, now: float) -> None:
        """PINGREQ from outlets silent for half their keepalive (between ladder steps)."""
        for j, s in enumerate(self.socks):
            if s is not None and self.state[j] == UP and now - self.last_tx[j] > KEEPALIVE_S / 2:
                self.send(j, mq.PINGREQ)


def simulator(conn: Any, port: int, n: int, ready: Any, share: tuple[int, int] = (0, 1)) -> None:
    """One process: outlets ``share[0]``, ``share[0] + share[1]``, ... below ``n``.
    Sets ``ready`` once all are connected (or after 600 s)."""
    sh = _Share(port, range(share[0], n, share[1]))
    m = len(sh.ids)
    sh.open_all()
    deadline = time.monotonic() + 600
    while sh.connected < m and time.monotonic() < deadline:
        sh.pump(0.02)
    ready.set()

    period = 0.0  # 0 = silent
    sent = 0
    t0 = time.monotonic()
    due_base = 0
    nxt = 0
    last_cmd = last_misc = time.monotonic()
    msg_id = (1 << 100) + (share[0] << 64)
    reconnecting: float | None = None  # when the reconnect began, until all are up
    running = True
    while running:
        now = time.monotonic()
        if reconnecting is not None and (sh.connected >= m or now - reconnecting > 300):
            conn.send((now - reconnecting, sh.connected))
            reconnecting = None
        if now - last_cmd > 0.05:
            last_cmd = now
            while conn.poll():
                cmd, arg = conn.recv()
                if cmd == "period":
                    period, t0, due_base = float(arg), now, sent
                elif cmd == "count":
                    conn.send((sent, sh.connected))
                elif cmd == "born":
                    conn.send((sum(sh.born), sh.last_birth))
                elif cmd == "reconnect":  # the broker restarted: a new session each
                    sh.close_all(say_goodbye=True)
                    sh.after_restart = True
                    sh.sessions = [s + 1 for s in sh.sessions]
                    sh.born = [False] * m
                    reconnecting = time.monotonic()
                    sh.open_all()
                elif cmd == "stop":
                    running = False
        if now - last_misc > 5:
            last_misc = now
            sh.keep_alive(now)
        if period > 0 and m:
            due = due_base + int((now - t0) * m / period)
            burst = 0
            while sent < due and burst < 2000:
                j = nxt
                nxt = (nxt + 1) % m
                msg_id += 1
                if sh.telemetry(j, msg_id):
                    sent += 1
                else:
                    due_base -= 1  # a disconnected outlet sends nothing this round
                burst += 1
            sh.pump(0 if sent < due else 0.002)
        else:
            sh.pump(0.05)
    sh.close_all(say_goodbye=True)
    conn.send((sent, 0))


def processes_for(outlets: int, brokers: int = 1) -> int:
    """One simulator process per 6,250 outlets, at least 2 and at most 8, rounded up to
    a multiple of the brokers they connect to (each broker an equal share)."""
    procs = max(2, min(8, -(-outlets // 6250)))
    return -(-procs // brokers) * brokers


class Fleet:
    """``n`` simulated outlets over ``procs`` processes; the parent's side of the pipes.
    Process k connects its outlets to ``ports[k % len(ports)]`` (edge brokers)."""

    def __init__(self, ports: list[int], n: int, procs: int) -> None:
        ctx = mp.get_context("fork")
        self.n = n
        self.pipes: list[Any] = []
        self.ready: list[Any] = []
        self.procs: list[Any] = []
        for k in range(procs):
            parent, child = ctx.Pipe()
            ready = ctx.Event()
            proc = ctx.Process(
                target=simulator,
                args=(child, ports[k % len(ports)], n, ready, (k, procs)),
                daemon=True,
            )
            proc.start()
            self.pipes.append(parent)
            self.ready.append(ready)
            self.procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [int(p.pid) for p in self.procs]

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(r.wait(max(0.0, deadline - time.monotonic())) for r in self.ready)

    def _ask(self, cmd: str, arg: Any = None) -> list[Any]:
        for p in self.pipes:
            p.send((cmd, arg))
        return [p.recv() for p in self.pipes]

    def set_period(self, seconds: float) -> None:
        for p in self.pipes:
            p.send(("period", seconds))

    def counts(self) -> tuple[int, int]:
        """(telemetry messages sent so far, outlets connected)."""
        replies = self._ask("count")
        return sum(r[0] for r in replies), sum(r[1] for r in replies)

    def born(self) -> tuple[int, float]:
        """(outlets that sent their birth, monotonic time of the last birth)."""
        replies = self._ask("born")
        return sum(r[0] for r in replies), max(r[1] for r in replies)

    def start_reconnect(self) -> None:
        for p in self.pipes:
            p.send(("reconnect", None))

    def reconnected(self) -> tuple[float, int]:
        """After ``start_reconnect``: (seconds the slowest process took, outlets connected)."""
        replies = [p.recv() for p in self.pipes]
        return max(r[0] for r in replies), sum(r[1] for r in replies)

    def stop(self) -> None:
        for p, proc in zip(self.pipes, self.procs, strict=True):
            if proc.is_alive():
                with contextlib.suppress(OSError):
                    p.send(("stop", None))
        for proc in self.procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
