"""The broker side of the ingest benchmarks: one Mosquitto, or one bridged to edge
brokers when the outlets are more than one Mosquitto process may hold here.

Mosquitto holds one descriptor per client, and a process may not raise its
RLIMIT_NOFILE past the hard limit it was given (raising it needs CAP_SYS_RESOURCE,
which a container may not have). Past ``PER_BROKER`` outlets the outlets connect to
edge brokers, each bridged to the core one (the uplink out, commands and the server's
state in), as a province with bridged Mosquittos would run (docs/deploy.md). The
server, the bare subscriber and real agents use the core.
"""

from __future__ import annotations

import math
import resource
import time
from pathlib import Path

from _common import TunedMosquitto

from govedge_testbed import ServiceUnavailable, free_port
from govedge_wire import SERVER_STATE_TOPIC

TUNING = ["max_connections -1", "max_queued_messages 100000", "max_inflight_messages 0"]


def per_broker() -> int:
    """Outlets one Mosquitto takes here: its descriptor limit less some room."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 500


class Brokers:
    """A core broker, and ``edges`` bridged to it when the outlets need them."""

    def __init__(self, work: Path, outlets: int, room: int | None = None) -> None:
        self.core = TunedMosquitto(TUNING, workdir=work / "broker")
        room = room or per_broker()
        self._work = work
        self._count = 0 if outlets <= room else math.ceil(outlets / room)
        self.edges: list[TunedMosquitto] = []

    def _edge(self, work: Path, i: int) -> TunedMosquitto:
        bridge = [
            "connection core",
            f"remote_clientid edge-{i}",  # the default is the host's name: one for all
            f"address 127.0.0.1:{self.core.port}",
            "topic govedge/v1/+/up/# out 1",
            "topic govedge/v1/+/down/# in 1",
            f"topic {SERVER_STATE_TOPIC} in 1",
            "cleansession true",
            "restart_timeout 1",
        ]
        return TunedMosquitto([*TUNING, *bridge], workdir=work / f"edge-{i}")

    @property
    def port(self) -> int:
        return self.core.port

    @property
    def url(self) -> str:
        return self.core.url

    @property
    def outlet_ports(self) -> list[int]:
        """Where the simulated outlets connect: the edges, or the core alone."""
        return [e.port for e in self.edges] or [self.core.port]

    @property
    def pids(self) -> list[int]:
        return [int(b._proc.pid) for b in (self.core, *self.edges) if b._proc is not None]

    def describe(self) -> str:
        if not self.edges:
            return "one Mosquitto"
        return f"one Mosquitto bridged to {len(self.edges)} edge Mosquittos"

    def start(self) -> None:
        """Start the core, then the edges; on any failure stop whatever did start."""
        try:
            _start(self.core)
            self.edges = [self._edge(self._work, i) for i in range(self._count)]
            self._start_edges()
        except BaseException:
            self.stop()
            raise

    def _start_edges(self) -> None:
        """Start the edges and wait for their bridges: a birth sent to an edge before
        its bridge is up would not reach the core."""
        mark = self.core.log_path.stat().st_size if self.core.log_path.exists() else 0
        for e in self.edges:
            _start(e)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with self.core.log_path.open("rb") as log:
                log.seek(mark)
                seen = log.read().decode(errors="replace")
            if all(f" as edge-{i} " in seen for i in range(len(self.edges))):
                return
            time.sleep(0.1)
        raise RuntimeError("the edge brokers' bridges did not connect within 30 s")

    def restart(self) -> None:
        """All of them, as an outage of the broker tier: every outlet and bridge reconnects."""
        for e in self.edges:
            e.stop()
        self.core.restart()
        self._start_edges()

    def stop(self) -> None:
        for e in self.edges:
            e.stop()
        self.core.stop()


def _start(broker: TunedMosquitto) -> None:
    """Start, once more on another port if the first was taken meanwhile (free_port()
    only says a port was free when it looked; other programs share this machine)."""
    try:
        broker.start()
    except ServiceUnavailable:
        broker.stop()
        broker.port = free_port()
        broker.start()
