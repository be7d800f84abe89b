"""The config rollout bench's simulated fleet: ``ConfigOutlets`` in a process of its own.

The fleet runs in a forked child so that its CPU is apart from the publisher's (or the
bench's HTTP polling) and measurable; the parent asks it questions over a pipe. Times
are ``time.monotonic()``, system-wide on Linux, so the child's and the parent's agree.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psutil
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from govedge_testbed.config_outlets import ConfigOutlets, OutletLog
from govedge_wire.config import DesiredConfig, config_hash, merge_layers

# Hangzhou's districts: outlets are spread over them round-robin.
REGIONS = ("330102", "330105", "330106", "330108")
CHANGED_REGION = "330106"


def outlet_ids(n: int) -> list[str]:
    return [f"cfg-{i:05d}" for i in range(n)]


def region_of(index: int) -> str:
    return REGIONS[index % len(REGIONS)]


def expected_hash(documents: Sequence[Mapping[str, Any]]) -> str:
    """The hash of the effective config of these scope documents, merged in order,
    normalised through the model as ``sign_config`` does."""
    model = DesiredConfig.model_validate(merge_layers(list(documents)))
    return config_hash(model.model_dump(mode="json", exclude_unset=True, exclude_none=True))


def broker_pid(broker: Any) -> int:
    """The Mosquitto process id (the testbed keeps it private; so does bench/fleet_ingest.py)."""
    return int(broker._proc.pid)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


Tls = Callable[[str], ssl.SSLContext] | None


def _serve(
    conn: Any, port: int, ids: list[str], keys: dict[str, Ed25519PublicKey], ready: Any, tls: Tls
) -> None:
    fleet = ConfigOutlets("127.0.0.1", port, ids, keys, tls=tls)
    t = time.monotonic()
    fleet.start(timeout=600)
    conn.send(time.monotonic() - t)
    ready.set()
    while True:
        cmd, *args = conn.recv()
        if cmd == "applied":  # (hash, ids or None): (arrived_at, applied_at) per outlet that has it
            wanted, subset = args[0], args[1] or ids
            conn.send(fleet.query(lambda logs, h=wanted, s=subset: _times(logs, h, s)))
        elif cmd == "wait_applied":  # (hash, ids or None, timeout): True when all did
            try:
                fleet.wait_applied(args[0], args[1], timeout=args[2])
                conn.send(True)
            except TimeoutError:
                conn.send(False)
        elif cmd == "progress":  # (hash, ids): how many applied it, refusals by reason
            wanted, subset = args
            applied = fleet.query(lambda logs, h=wanted, s=subset: _count(logs, h, s))
            conn.send((applied, fleet.query(_totals)["refused"]))
        elif cmd == "touched":  # (since, ids): how many got any down/config message since
            since, subset = args
            conn.send(fleet.query(lambda logs, t0=since, s=subset: _touched(logs, t0, s)))
        elif cmd == "totals":
            conn.send(fleet.query(_totals))
        elif cmd == "restart":  # every outlet reconnects with its applied config
            fleet, result = _restart(fleet, port, ids, keys, tls)
            conn.send(result)
        elif cmd == "stop":
            fleet.stop()
            conn.send(None)
            return


def _times(
    logs: Mapping[str, OutletLog], wanted: str, subset: Sequence[str]
) -> list[tuple[float, float]]:
    out = []
    for outlet in subset:
        hit = next((a for a in logs[outlet].applied if a.hash == wanted), None)
        if hit is not None:
            out.append((hit.arrived_at, hit.applied_at))
    return out


def _count(logs: Mapping[str, OutletLog], wanted: str, subset: Sequence[str]) -> int:
    return sum(1 for o in subset if logs[o].applied_hash == wanted)


def _touched(logs: Mapping[str, OutletLog], since: float, subset: Sequence[str]) -> int:
    return sum(1 for o in subset if (logs[o].last_message_at or 0) >= since)


def _totals(logs: Mapping[str, OutletLog]) -> dict[str, Any]:
    refused: dict[str, int] = {}
    for log in logs.values():
        for r in log.refused:
            refused[r.reason] = refused.get(r.reason, 0) + 1
    return {
        "reports_sent": sum(log.reports_sent for log in logs.values()),
        "already_applied": sum(log.already_applied for log in logs.values()),
        "absent": sum(log.absent for log in logs.values()),
        "refused": refused,
    }


def _restart(
    fleet: ConfigOutlets, port: int, ids: list[str], keys: dict[str, Ed25519PublicKey], tls: Tls
) -> tuple[ConfigOutlets, dict[str, float]]:
    """Disconnect all, reconnect all (each keeping its applied config); time until every
    outlet has its retained config again, recognised as already applied."""
    applied = fleet.query(
        lambda logs: {
            o: (log.applied_version, log.applied_hash)
            for o, log in logs.items()
            if log.applied_version is not None and log.applied_hash is not None
        }
    )
    fleet.stop()
    t0 = time.monotonic()
    again = ConfigOutlets("127.0.0.1", port, ids, keys, applied=applied, tls=tls)
    again.start(timeout=600)
    connected_s = time.monotonic() - t0
    seeded = set(applied)
    again.wait(lambda logs: all(logs[o].already_applied >= 1 for o in seeded), timeout=600)
    totals = again.query(_totals)
    return again, {
        "connect_s": connected_s,
        "retained_s": time.monotonic() - t0,
        "outlets": float(len(seeded)),
        "reports_sent": float(totals["reports_sent"]),
    }


@dataclass
class SimFleet:
    """The parent's handle on the simulated fleet process."""

    proc: Any
    conn: Any
    connect_s: float

    @classmethod
    def start(
        cls, port: int, ids: list[str], keys: dict[str, Ed25519PublicKey], tls: Tls = None
    ) -> SimFleet:
        ctx = mp.get_context("fork")
        parent, child = ctx.Pipe()
        ready = ctx.Event()
        proc = ctx.Process(target=_serve, args=(child, port, ids, keys, ready, tls), daemon=True)
        proc.start()
        if not parent.poll(600):
            raise RuntimeError("the simulated outlets did not connect")
        return cls(proc=proc, conn=parent, connect_s=parent.recv())

    def ask(self, *cmd: Any) -> Any:
        self.conn.send(cmd)
        return self.conn.recv()

    def cpu_s(self) -> float:
        return cpu_s(self.proc.pid)

    def stop(self) -> None:
        if self.proc.is_alive():
            with contextlib.suppress(EOFError, OSError):
                self.ask("stop")
            self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()
