"""Parts of ``outbox_drain.py``'s latency run (issue 17): clerks on several outlets, a fleet.

``BackgroundFleet``: ``fleet_ingest.simulator`` (imported, not copied) in its own process:
N simulated outlets, one MQTT connection each, births and then telemetry at a cadence.
``ClerkOutlet``: one real ``edge-agent run`` with its own outlet id, data directory, local
API and app token. ``clerk_load``: submissions at a steady total rate, round robin over
the outlets, each posted on time whether or not the previous one was answered.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _common import BIN, start_agent, stop
from fleet_ingest import simulator

from fleet_server.transactions.identity import upstream_idempotency_key

VALID_ID = "33010619900101123X"  # check digit valid (GB 11643); txkit's ID_NUMBER is not


class BackgroundFleet:
    """``n`` simulated outlets in a child process; silent until ``set_period``."""

    def __init__(self, port: int, n: int) -> None:
        ctx = mp.get_context("fork")
        self.n = n
        self._parent, child = ctx.Pipe()
        self._ready = ctx.Event()
        self.proc = ctx.Process(target=simulator, args=(child, port, n, self._ready), daemon=True)
        self.proc.start()

    def wait_connected(self, timeout: float) -> int:
        """Outlets connected once the simulator says it is done connecting."""
        if not self._ready.wait(timeout):
            raise RuntimeError(f"the simulator did not connect {self.n:,} outlets in {timeout} s")
        return self.counts()[1]

    def set_period(self, seconds: float) -> None:
        """Every outlet sends one telemetry message per ``seconds`` from now on."""
        self._parent.send(("period", seconds))

    def counts(self) -> tuple[int, int]:
        """(telemetry messages sent so far, outlets connected)."""
        self._parent.send(("count", None))
        sent, connected = self._parent.recv()
        return int(sent), int(connected)

    def close(self) -> None:
        if self.proc.is_alive():
            self._parent.send(("stop", None))
            self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()


# The agent's own line once its local API listens (edge_agent/cli.py).
_ANNOUNCED_PORT = re.compile(r": local API on http://127\.0\.0\.1:(\d+)")


@dataclass
class ClerkOutlet:
    """One real agent whose local API a clerk app uses."""

    outlet_id: str
    data_dir: Path
    token: str = ""
    api_port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def api_up(self) -> bool:
        log = self.data_dir.parent / f"agent-{self.outlet_id}.log"
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.outlet_id} exited:\n{log.read_text()[-2000:]}")
        if not self.api_port:
            # Port 0: the agent binds a free port and prints it. A port picked free
            # beforehand can be taken by any of the run's thousands of connections.
            found = _ANNOUNCED_PORT.search(log.read_text(errors="replace"))
            if found is None:
                return False
            self.api_port = int(found[1])
        try:
            r = httpx.get(
                f"{self.api_url}/v1/devices",
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=2,
            )
        except httpx.HTTPError:
            return False
        return r.status_code == 200


def start_clerk_outlets(mqtt_url: str, work: Path, n: int) -> list[ClerkOutlet]:
    """``n`` agents, each with an app token from ``edge-agent apps add`` (run in parallel)."""
    outlets = [
        ClerkOutlet(f"township-bench-{i:02d}", work / f"clerk-agent-{i:02d}") for i in range(n)
    ]
    adds = []
    for o in outlets:
        o.data_dir.mkdir(mode=0o700, parents=True)
        adds.append(
            subprocess.Popen(
                [
                    str(BIN / "edge-agent"),
                    "apps",
                    "add",
                    "bench-clerk",
                    "--data-dir",
                    str(o.data_dir),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    for o, add in zip(outlets, adds, strict=True):
        out, err = add.communicate(timeout=120)
        if add.returncode != 0:
            raise RuntimeError(f"edge-agent apps add failed: {err.decode()[-500:]}")
        o.token = out.decode().strip().splitlines()[-1]
        o.proc = start_agent(mqtt_url, o.outlet_id, o.data_dir, local_api_port=0)
    return outlets


def stop_clerk_outlets(outlets: list[ClerkOutlet]) -> None:
    for o in outlets:
        if o.proc is not None:
            o.proc.terminate()
    for o in outlets:
        stop(o.proc)


def submission() -> dict[str, Any]:
    """A submission body as a clerk app posts it (a valid ID number, no materials)."""
    return {
        "item_code": "000101",
        "region_code": "330902",
        "applicant": {"name": "张三丰", "id_number": VALID_ID},
        "materials": [],
        "window": "W3",
        "clerk": "clerk-7",
    }


@dataclass
class ClerkResult:
    # the upstream's Idempotency-Key (outlet and tx id) -> monotonic send time
    sent: dict[str, float] = field(default_factory=dict)
    accept_ms: list[float] = field(default_factory=list)
    late_starts: int = 0  # sends that started more than 50 ms after their slot


async def clerk_load(
    outlets: list[ClerkOutlet], *, rate: float, samples: int, tag: str
) -> ClerkResult:
    """Post ``samples`` submissions at ``rate``/s in total, outlet after outlet."""
    result = ClerkResult()
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one(i: int, slot: float) -> None:
            o = outlets[i % len(outlets)]
            t0 = time.monotonic()
            if t0 - slot > 0.05:
                result.late_starts += 1
            r = await client.post(
                f"{o.api_url}/v1/submissions",
                json=submission(),
                headers={"Authorization": f"Bearer {o.token}", "Idempotency-Key": f"{tag}-{i:06d}"},
            )
            if r.status_code != 202:
                raise RuntimeError(f"submission refused by {o.outlet_id}: {r.status_code} {r.text}")
            result.accept_ms.append((time.monotonic() - t0) * 1000)
            result.sent[upstream_idempotency_key(o.outlet_id, r.json()["tx_id"])] = t0

        start = time.monotonic() + 0.2
        tasks = []
        for i in range(samples):
            slot = start + i / rate
            await asyncio.sleep(max(0.0, slot - time.monotonic()))
            tasks.append(asyncio.create_task(one(i, slot)))
        await asyncio.gather(*tasks)
    return result
