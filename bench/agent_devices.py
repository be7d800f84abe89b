"""Agent device overhead (issue 3).

1. ID-card read: ``POST /v1/id-card/read`` on a real ``edge-agent run --simulate`` (the
   simulated reader on a pty, attached through the real discovery, profile and driver)
   vs the driver (``SamIdReader``) talking to the simulator (``IdCardSimulator``) on a pty
   directly in this process, measured in the same run. Overhead = API − direct (p50, p99).
2. Hot-plug → ready: ``DeviceManager`` with the shipped profiles and default timings, fed
   by ``SimulatedHardware``'s ``ControlledSource`` (no udev here), with the real ID-card
   simulator on a pty: unplug, replug, time from the add event to ``ready``.
3. Idle agent: RSS and CPU of ``edge-agent run --simulate`` with every simulated device
   attached, sampled with psutil.

    python bench/agent_devices.py [--quick] [--write-doc] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BIN, machine, median, pct, poll, start_agent, stop, table, update_doc  # noqa: E402
from _figures import Figure, write_figures  # noqa: E402

# Issue 17's agent goals with a camera attached (``--simulate`` attaches every shipped
# kind, the camera among them): RSS ≤ 90 MiB, idle CPU ≤ 0.3 % of a core.
GOAL_RSS_MIB, GOAL_IDLE_CPU = 90.0, 0.3

from edge_agent.devices.base import DeviceIdentity  # noqa: E402
from edge_agent.devices.id_card_reader.cards import make_card  # noqa: E402
from edge_agent.devices.id_card_reader.driver import SamIdReader  # noqa: E402
from edge_agent.devices.id_card_reader.simulator import IdCardSimulator  # noqa: E402
from edge_agent.discovery import DeviceManager  # noqa: E402
from edge_agent.profiles import load_profiles  # noqa: E402
from edge_agent.simulate import SimulatedHardware  # noqa: E402
from govedge_testbed import Mosquitto, free_port  # noqa: E402


async def direct_reads(n: int) -> list[float]:
    sim = IdCardSimulator().start()
    sim.place_card(make_card())
    try:
        reader = SamIdReader(
            DeviceIdentity(
                device_id="direct-idcard",
                profile="sam-usb-c35a",
                kind="id_card_reader",
                address=sim.device_path,
            )
        )
        await reader.open()
        try:
            await reader.read_card()  # warm-up
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                await reader.read_card()
                out.append((time.perf_counter() - t0) * 1000)
            return out
        finally:
            await reader.close()
    finally:
        sim.stop()


async def hotplug(n: int) -> list[float]:
    profiles = await asyncio.to_thread(load_profiles, ROOT / "device_profiles")
    out = []
    async with SimulatedHardware(pcsc=False) as hw, DeviceManager(profiles, hw.source) as manager:
        dev = None

        async def find() -> str | None:
            for info in manager.inventory():
                if info.kind == "id_card_reader" and info.state == "ready":
                    return info.device_id
            return None

        for _ in range(200):
            dev = await find()
            if dev:
                break
            await asyncio.sleep(0.05)
        assert dev, f"no ID-card reader ready: {manager.inventory()}"
        for _ in range(n):
            await hw.unplug()
            await manager.wait_for_state(dev, "offline", "error", timeout_s=10)
            t0 = time.perf_counter()
            await hw.replug()
            await manager.wait_for_state(dev, "ready", timeout_s=10)
            out.append((time.perf_counter() - t0) * 1000)
    return out


def agent_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    broker = Mosquitto(workdir=work / "broker")
    broker.start()
    agent = None
    try:
        data_dir = work / "agent"
        data_dir.mkdir(mode=0o700)
        token = (
            subprocess.run(
                [str(BIN / "edge-agent"), "apps", "add", "bench", "--data-dir", str(data_dir)],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        port = free_port()
        log = work / "agent.log"
        agent = start_agent(
            broker.url,
            "bench-devices",
            data_dir,
            local_api_port=port,
            extra=["--simulate"],
            log=log,
        )
        poll(
            lambda: "simulated devices attached" in log.read_text(),
            timeout=60,
            what="simulated devices",
        )
        attached = int(re.search(r"(\d+) simulated devices attached", log.read_text()).group(1))
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

        def idcard_ready() -> bool:
            try:
                devs = api.get("/v1/devices").json()["devices"]
            except (httpx.HTTPError, KeyError, ValueError):
                return False
            return any(d["kind"] == "id_card_reader" and d["state"] == "ready" for d in devs)

        poll(idcard_ready, timeout=60, what="ID-card reader ready")
        assert api.post("/v1/id-card/read", json={}).status_code == 200  # warm-up
        lat = []
        for _ in range(args.reads):
            t0 = time.perf_counter()
            r = api.post("/v1/id-card/read", json={})
            lat.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
        api.close()
        time.sleep(3)  # settle after the reads
        p = psutil.Process(agent.pid)
        procs = [p, *p.children(recursive=True)]
        c0 = sum(x.cpu_times().user + x.cpu_times().system for x in procs)
        t0 = time.monotonic()
        rss = []
        while time.monotonic() - t0 < args.idle_s:
            rss.append(p.memory_info().rss / 2**20)
            time.sleep(1)
        c1 = sum(x.cpu_times().user + x.cpu_times().system for x in procs)
        return {
            "api": lat,
            "attached": attached,
            "idle_cpu": 100 * (c1 - c0) / (time.monotonic() - t0),
            "rss": median(rss),
            "children": len(procs) - 1,
        }
    finally:
        stop(agent)
        broker.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--write-doc", action="store_true")
    ap.add_argument("--json", type=Path, help="write the figures there (bench/_figures.py)")
    args = ap.parse_args()
    q = args.quick
    args.reads, args.plugs, args.idle_s, runs = (30, 5, 8, 1) if q else (200, 30, 20, 3)
    print(machine())
    res = []
    for run in range(runs):
        work = Path(tempfile.mkdtemp(prefix="bench-devices-"))
        try:
            a = agent_part(args, work)
            d = asyncio.run(direct_reads(args.reads))
            h = asyncio.run(hotplug(args.plugs))
            r = {
                "api50": pct(a["api"], 50),
                "api99": pct(a["api"], 99),
                "d50": pct(d, 50),
                "d99": pct(d, 99),
                "h50": pct(h, 50),
                "h99": pct(h, 99),
                "hmax": max(h),
                "rss": a["rss"],
                "cpu": a["idle_cpu"],
                "attached": a["attached"],
                "children": a["children"],
            }
            res.append(r)
            print(
                f"run {run + 1}: ID-card read API p50 {r['api50']:.1f} ms p99 {r['api99']:.1f} | direct "
                f"p50 {r['d50']:.1f} p99 {r['d99']:.1f} | hot-plug→ready p50 {r['h50']:.0f} ms p99 {r['h99']:.0f} | "
                f"agent RSS {r['rss']:.0f} MiB idle CPU {r['cpu']:.1f}% ({r['attached']} devices)"
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
    m = lambda k: median([r[k] for r in res])  # noqa: E731
    text = "\n".join(
        [
            f"{len(res)} run(s), medians; {args.reads} reads and {args.plugs} plug cycles per run.",
            "",
            table(
                ["", "p50 ms", "p99 ms"],
                [
                    [
                        "ID-card read via local API (HTTP → agent → driver → simulator)",
                        m("api50"),
                        m("api99"),
                    ],
                    ["ID-card read, driver → simulator directly (same run)", m("d50"), m("d99")],
                    ["agent overhead (API − direct)", m("api50") - m("d50"), m("api99") - m("d99")],
                    ["hot-plug add event → `ready` (default timings)", m("h50"), m("h99")],
                ],
            ),
            "",
            table(
                [
                    "devices attached (`--simulate`)",
                    "agent RSS MiB",
                    f"idle CPU % of one core ({args.idle_s} s)",
                ],
                [[int(m("attached")), m("rss"), m("cpu")]],
            ),
        ]
    )
    print()
    print(text)
    write_figures(args.json, [
        Figure("id_read_api.p99", m("api99"), "ms", baseline=m("d99"), higher=False),
        Figure("id_read_api.p50", m("api50"), "ms", baseline=m("d50"), higher=False),
        Figure("hotplug_ready.p99", m("h99"), "ms", higher=False),
        Figure("agent_rss", m("rss"), "MiB", goal=GOAL_RSS_MIB, higher=False),
        Figure("agent_idle_cpu", m("cpu"), "% of a core", goal=GOAL_IDLE_CPU, higher=False),
    ])  # fmt: skip
    if args.write_doc:
        update_doc(
            f"agent_devices{'-quick' if q else ''}",
            f"### Results ({'--quick' if q else 'full'}, {time.strftime('%Y-%m-%d')}; {machine()})\n\n{text}",
        )


if __name__ == "__main__":
    main()
