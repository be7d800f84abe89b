"""Update campaign (issue 11): N light simulated agents, a real broker and fleet server.

The agents (``govedge_testbed.update_agents`` in a forked child, one MQTT connection
each, so their CPU is apart) answer every offer with the protocol's steps and a new
birth (docs/updates.md). The bench uploads a release, registers the outlets, starts a
campaign over all of them with the default waves, no jitter and no wait between waves,
and measures the time until the server says ``completed``, each wave's time, and the
server's CPU. The configured waits (``--wave-wait``, ``--jitter``) are reported apart so
what remains is the server's own overhead.

    python bench/campaign.py [--agents 10000] [--quick] [--concurrency 50] [--write-doc] [--json FILE]

``--quick`` is 500 agents unless ``--agents`` says otherwise.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    TunedMosquitto,
    machine,
    poll,
    raise_nofile,
    start_server,
    stop,
    table,
    update_doc,
)
from _figures import Figure, write_figures
from _rollout_sim import broker_pid, cpu_s

from govedge_testbed.update_agents import UpdateAgents

OLD, NEW = "1.0.0", "1.1.0"
REGIONS = ("330102", "330105", "330106", "330108")
SIGNING_KEY_ENV = "GOVEDGE_CONFIG_SIGNING_KEY"


class ServerNotReady(RuntimeError):
    """The server lacks the campaign API (not merged yet)."""


def closed_now_hours() -> dict[str, list[str]]:
    """Opening hours with one span three days from now only: closed now and for days,
    so every outlet is inside its maintenance window while the bench runs."""
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(time.gmtime().tm_wday + 3) % 7]
    return {day: ["09:00-17:00"]}


def _wheel(version: str) -> bytes:
    """A minimal real wheel of ``version`` (the release the campaign installs)."""
    out = io.BytesIO()
    dist = f"govedge-{version}.dist-info"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as wheel:
        wheel.writestr("govedge/__init__.py", f"VERSION = {version!r}\n")
        wheel.writestr(
            f"{dist}/METADATA", f"Metadata-Version: 2.3\nName: govedge\nVersion: {version}\n"
        )
        wheel.writestr(
            f"{dist}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr(f"{dist}/RECORD", "")
    return out.getvalue()


def _serve_agents(conn: Any, port: int, ids: list[str]) -> None:
    agents = UpdateAgents("127.0.0.1", port, ids, version=OLD)
    t = time.monotonic()
    agents.start(timeout=900)
    conn.send(time.monotonic() - t)
    while True:
        cmd = conn.recv()
        if cmd == "totals":
            conn.send(
                agents.query(
                    lambda logs: {
                        "offered": sum(1 for log in logs.values() if log.offered),
                        "offers": sum(len(log.offers) for log in logs.values()),
                        "upgraded": sum(1 for log in logs.values() if log.version == NEW),
                    }
                )
            )
        elif cmd == "stop":
            agents.stop()
            conn.send(None)
            return


def run(n: int, work: Path, broker: TunedMosquitto, args: argparse.Namespace) -> dict[str, Any]:
    key = Ed25519PrivateKey.generate()
    key_path = work / "signing.pem"
    key_path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    key_path.chmod(0o600)
    server = start_server(
        broker.url, work, env={SIGNING_KEY_ENV: str(key_path), "GOVEDGE_LOG_LEVEL": "WARNING"}
    )
    http = httpx.Client(base_url=server.url, timeout=120)
    conn, child = mp.Pipe()
    proc: Any = None
    try:
        if http.get("/api/v1/campaigns").status_code in (404, 405):
            raise ServerNotReady("GET /api/v1/campaigns is not there: the campaign API is missing")
        upload = http.post(
            "/api/v1/releases",
            params={"version": NEW, "file_name": f"govedge-{NEW}-py3-none-any.whl"},
            content=_wheel(NEW),
            headers={"Content-Type": "application/octet-stream"},
        )
        if upload.is_error:
            raise ServerNotReady(
                f"release upload answered {upload.status_code}: {upload.text[:300]}"
            )
        ids = [f"upd-{i:05d}" for i in range(n)]
        profiles = [
            {
                "outlet_id": o,
                "kind": "township_centre",
                "region_code": REGIONS[i % len(REGIONS)],
                "opening_hours": closed_now_hours(),
            }
            for i, o in enumerate(ids)
        ]
        http.put("/api/v1/outlet-profiles", json=profiles).raise_for_status()
        proc = mp.get_context("fork").Process(target=_serve_agents, args=(child, broker.port, ids))
        proc.start()
        connect_s = conn.recv()
        poll(
            lambda: server.stats()["accepted"] >= n and server.stats()["queue_depth"] == 0,
            timeout=args.timeout, interval=0.5, what="every birth ingested",
        )  # fmt: skip
        pids = {"server": server.proc.pid, "broker": broker_pid(broker), "agents": proc.pid}
        cpu0 = {name: cpu_s(pid) for name, pid in pids.items()}
        body = {
            "name": "bench", "release": NEW, "target": {"regions": ["33"]},
            "concurrency": args.concurrency, "jitter_s": args.jitter, "wave_wait_s": args.wave_wait,
        }  # fmt: skip
        t0 = time.monotonic()
        created = http.post("/api/v1/campaigns", json=body)
        if created.status_code != 201:
            raise ServerNotReady(
                f"POST /api/v1/campaigns answered {created.status_code}: {created.text[:300]}"
            )
        cid = created.json()["id"]
        wave_done: dict[int, float] = {}
        row: dict[str, Any] = created.json()
        polls = 0
        while row["state"] not in ("completed", "aborted", "paused"):
            if time.monotonic() - t0 > args.timeout:
                raise RuntimeError(f"campaign not completed in {args.timeout} s: {row['counts']}")
            time.sleep(0.5)
            row = http.get(f"/api/v1/campaigns/{cid}").json()
            polls += 1
            for wave in row["waves"]:
                if wave.get("finished_at") and wave["index"] not in wave_done:
                    wave_done[wave["index"]] = time.monotonic() - t0
        total_s = time.monotonic() - t0
        cpu = {name: cpu_s(pid) - cpu0[name] for name, pid in pids.items()}
        conn.send("totals")
        totals = conn.recv()
        waits = args.wave_wait * (len(row["waves"]) - 1) + args.jitter
        return {
            "agents": n, "connect_s": connect_s, "state": row["state"], "counts": row["counts"],
            "total_s": total_s, "waits_s": waits, "overhead_s": total_s - waits,
            "waves": [(w["index"], w["size"], wave_done.get(w["index"])) for w in row["waves"]],
            "cpu": cpu, "totals": totals, "polls": polls,
        }  # fmt: skip
    finally:
        if proc is not None and proc.is_alive():
            conn.send("stop")
            conn.recv()
            proc.join(30)
        http.close()
        stop(server.proc)


def report(res: dict[str, Any], args: argparse.Namespace) -> str:
    waves = [[i, size, "-" if t is None else t] for i, size, t in res["waves"]]
    cpu = res["cpu"]
    return "\n".join(
        [
            f"{res['agents']:,} agents connected in {res['connect_s']:.1f} s. Campaign: default "
            f"waves, concurrency {args.concurrency}, jitter {args.jitter} s, wave wait "
            f"{args.wave_wait} s; the agents answer each step at once.",
            "",
            table(["wave", "outlets", "completed at s"], waves),
            "",
            table(
                [
                    "end state",
                    "completed s",
                    "configured waits s",
                    "server overhead s",
                    "server CPU s",
                    "server CPU ms per outlet",
                    "broker CPU s",
                    "agents CPU s",
                    "outlets offered",
                    "offers sent",
                    "upgraded",
                ],
                [
                    [
                        res["state"],
                        res["total_s"],
                        res["waits_s"],
                        res["overhead_s"],
                        cpu["server"],
                        1000 * cpu["server"] / res["agents"],
                        cpu["broker"],
                        cpu["agents"],
                        res["totals"]["offered"],
                        res["totals"]["offers"],
                        res["totals"]["upgraded"],
                    ]
                ],
            ),
            f"Counts at the end: {res['counts']}.",
        ]
    )


def figures(res: dict[str, Any]) -> list[Figure]:
    """The campaign's time and the server's CPU per outlet, against the agents' own CPU
    per outlet in the same run (what answering the protocol costs at the other end)."""
    n, cpu = res["agents"], res["cpu"]
    return [
        Figure("completed", res["total_s"], "s", higher=False),
        Figure("server_cpu_per_outlet", 1000 * cpu["server"] / n, "ms",
               baseline=1000 * cpu["agents"] / n, higher=False),
        Figure("upgraded", res["totals"]["upgraded"], "outlets", baseline=n),
    ]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int)
    ap.add_argument("--quick", action="store_true", help="500 agents unless --agents")
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--jitter", type=int, default=0)
    ap.add_argument("--wave-wait", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--write-doc", action="store_true")
    ap.add_argument("--json", type=Path, help="write the figures there (bench/_figures.py)")
    args = ap.parse_args()
    args.agents = args.agents or (500 if args.quick else 10_000)
    nofile = raise_nofile()
    load0 = os.getloadavg()
    print(f"{machine()}; RLIMIT_NOFILE {nofile}; load average {load0[0]:.1f}")
    work = Path(tempfile.mkdtemp(prefix="bench-campaign-"))
    extra = ["max_connections -1", "max_queued_messages 100000", "max_inflight_messages 0"]
    broker = TunedMosquitto(extra, workdir=work / "broker")
    broker.start()
    try:
        res = run(args.agents, work, broker, args)
    except ServerNotReady as exc:
        sys.exit(f"campaign: {exc}")
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    load1 = os.getloadavg()
    loads = f"Load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end (1 min)."
    text = report(res, args)
    print()
    print(text)
    print(loads)
    write_figures(args.json, figures(res))
    if args.write_doc:
        update_doc(
            f"campaign-{args.agents}",
            f"### Results ({args.agents:,} agents, {time.strftime('%Y-%m-%d')}; {machine()})"
            f"\n\n{loads}\n\n{text}",
        )


if __name__ == "__main__":
    main()
