"""``fleet_ingest.py --workers``: do ingest workers add up? (issue 17)

N ``fleet-server run`` processes on one PostgreSQL, one share group on one Mosquitto
(docs/deploy.md, "One Mosquitto"), for each N asked (1 always, as the baseline) in
the same run, against the same simulated fleet and a bare paho subscriber:

1. a fresh database, the N workers started one after the other (each upgrades the
   schema first), every outlet reconnecting with a new session and birthing on the
   server's retained ``online``: the seconds until all count online;
2. an **even step**: the same offered rate for every N (``--offer``, one that a single
   worker keeps up with): the workers' CPU per accepted message against one worker's,
   which is what a group costs per message when no worker is starved of CPU;
3. a **saturation step**: the fleet offers more telemetry than the workers take (2.5 ×
   ``--offer`` for one worker; for N > 1, 1.5 × N × what one worker took); what they
   accept per second is their capacity, summed over the workers, with their CPU (also
   summed) and the bare subscriber's CPU per message in the same step;
4. the workers stopped before the next N.

The capacity of a saturated worker is what it accepts while its queue grows; a step
the workers kept up with (accepted ≥ 90 % of offered) is marked, its rate is then only
a lower bound.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from _brokers import Brokers
from _common import Server, median, start_server, stop, table
from _figures import Figure
from _fleet_sim import Fleet, processes_for
from _ingest_probe import count_online, start_bare
from _procs import ProcGroup

from govedge_testbed import Postgres

SHARE_GROUP = "bench"


def worker_counts(spec: str) -> list[int]:
    """``--workers 2`` → [1, 2]; ``--workers 1,2,4`` → [1, 2, 4]: one is the baseline."""
    counts = sorted({1, *(int(x) for x in spec.split(","))})
    if counts[0] < 1:
        raise SystemExit(f"--workers wants positive counts, got {spec!r}")
    return counts


def _start_workers(broker: Any, url: str, work: Path, n: int) -> list[Server]:
    servers: list[Server] = []
    env = {
        "GOVEDGE_LOG_LEVEL": "WARNING",
        "GOVEDGE_MQTT_SHARE_GROUP": SHARE_GROUP,
        "GOVEDGE_PKI_DIR": str(work / "pki"),
    }
    try:
        for i in range(n):  # one after the other: each upgrades the schema first
            wdir = work / f"worker-{n}-{i}"
            wdir.mkdir(parents=True, exist_ok=True)
            servers.append(start_server(broker.url, wdir, env=env, database_url=url))
    except BaseException:
        for s in servers:
            stop(s.proc)
        raise
    return servers


def _totals(servers: list[Server]) -> dict[str, float]:
    """Received, accepted, queued and refused-as-overloaded, summed over the workers."""
    total = {"received": 0.0, "accepted": 0.0, "queue_depth": 0.0}
    for s in servers:
        st = s.stats()
        total["received"] += st["received"]
        total["accepted"] += st["accepted"]
        total["queue_depth"] += st["queue_depth"]
        for group in ("rejected", "noted"):
            for reason, count in st.get(group, {}).items():
                total[f"{group}.{reason}"] = total.get(f"{group}.{reason}", 0.0) + count
    return total


def _grown(before: dict[str, float], after: dict[str, float], prefix: str) -> dict[str, float]:
    """The counters under ``prefix`` that grew, by how much."""
    return {
        k.removeprefix(prefix): v - before.get(k, 0.0)
        for k, v in after.items()
        if k.startswith(prefix) and v > before.get(k, 0.0)
    }


def _births(args: argparse.Namespace, fleet: Fleet, server: Server, outlets: int) -> float:
    """Every outlet reconnects with a new session; seconds until all count online."""
    t0 = time.monotonic()
    fleet.start_reconnect()
    online = -1
    while time.monotonic() - t0 < args.birth_timeout:
        online = count_online(server)
        if online >= outlets:
            break
        time.sleep(0.25)
    seconds = time.monotonic() - t0
    fleet.reconnected()
    if online < outlets:
        print(f"  only {online:,} of {outlets:,} online after {seconds:.0f} s")
        return float("nan")
    return seconds


def _first_rounds(
    args: argparse.Namespace, fleet: Fleet, servers: list[Server], rate: float
) -> float:
    """A few rounds of telemetry from every outlet, then until the workers drained them.

    In a share group the birth of an outlet reaches one worker; every other worker
    reads that outlet's stored row at its first message from it (fleet_server/ingest,
    ``needs_refresh``). That is a one-off per outlet and worker after births, not the
    steady state the saturation step measures, so it happens here first. Returns the
    seconds from the first message to an empty queue.
    """
    rounds = len(servers) + 1  # the broker deals round-robin: each worker gets each outlet
    t0 = time.monotonic()
    fleet.set_period(args.outlets / rate)
    time.sleep(rounds * args.outlets / rate)
    fleet.set_period(0)
    deadline = time.monotonic() + args.birth_timeout
    while _totals(servers)["queue_depth"] > 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    return time.monotonic() - t0


def _saturate(
    args: argparse.Namespace,
    fleet: Fleet,
    servers: list[Server],
    bare: tuple[Any, Any],
    offered_rate: float,
) -> dict[str, Any]:
    fleet.set_period(args.outlets / offered_rate)
    time.sleep(args.warmup)
    bare_proc, bare_count = bare
    s_workers, s_bare = ProcGroup([s.proc.pid for s in servers]), ProcGroup([bare_proc.pid])
    t0 = time.monotonic()
    st0, b0, (sent0, _) = _totals(servers), bare_count.value, fleet.counts()
    depths = []
    while time.monotonic() - t0 < args.step_s:
        time.sleep(1)
        depths.append(_totals(servers)["queue_depth"])
    dt = time.monotonic() - t0
    st1, b1, (sent1, _) = _totals(servers), bare_count.value, fleet.counts()
    cpu, rss = s_workers.mark()
    bare_cpu, _ = s_bare.mark()
    fleet.set_period(0)
    accepted = (st1["accepted"] - st0["accepted"]) / dt
    offered = (sent1 - sent0) / dt
    return {
        "offered": offered,
        "accepted": accepted,
        "cpu": cpu,  # % of one core, summed over the workers
        "rss": rss,
        "bare_rate": (b1 - b0) / dt,
        "bare_cpu": bare_cpu,
        "depth_end": depths[-1] if depths else 0,
        "rejected": _grown(st0, st1, "rejected."),
        # e.g. presence_reloaded: rows read at a message whose birth another worker took
        "noted": _grown(st0, st1, "noted."),
        "saturated": accepted < 0.9 * offered,
    }


def run_workers(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    counts = worker_counts(args.workers)
    broker = Brokers(work, args.outlets, args.per_broker)
    broker.start()
    pg = Postgres()
    fleet: Fleet | None = None
    servers: list[Server] = []
    bare_proc = None
    try:
        pg.start()
        bare_proc, bare_count = start_bare(broker.port)
        # The outlets connect (and birth into nothing) before any worker runs; each
        # count then makes them reconnect and birth again into its own database.
        t = time.monotonic()
        procs = args.sim_procs or processes_for(args.outlets, len(broker.outlet_ports))
        fleet = Fleet(broker.outlet_ports, args.outlets, procs)
        if not fleet.wait_ready(600):
            raise RuntimeError("simulator did not connect its outlets")
        print(f"{fleet.counts()[1]:,} outlets connected in {time.monotonic() - t:.1f} s")
        rows: list[dict[str, Any]] = []
        one = 0.0
        for n in counts:
            t = time.monotonic()
            url = pg.create_database(f"ingest_{n}w")
            servers = _start_workers(broker, url, work, n)
            print(f"  {n} worker(s) started in {time.monotonic() - t:.1f} s")
            births_s = _births(args, fleet, servers[0], args.outlets)
            first_s = _first_rounds(args, fleet, servers, args.offer)
            even = _saturate(args, fleet, servers, (bare_proc, bare_count), args.offer)
            offer = 2.5 * args.offer if n == 1 or not one else max(args.offer, 1.5 * n * one)
            step = _saturate(args, fleet, servers, (bare_proc, bare_count), offer)
            if n == 1:
                one = step["accepted"]
            rows.append(
                {
                    "workers": n,
                    "births_s": births_s,
                    "first_s": first_s,
                    **step,
                    "even_offered": even["offered"],
                    "even_accepted": even["accepted"],
                    "even_cpu": even["cpu"],
                }
            )
            print(
                f"  {n} worker(s): births online {births_s:.1f} s; first rounds of telemetry "
                f"taken in {first_s:.1f} s; even step: {even['accepted']:,.0f} of "
                f"{even['offered']:,.0f}/s at {even['cpu']:.0f} % CPU; offered {step['offered']:,.0f}/s,"
                f" accepted {step['accepted']:,.0f}/s at {step['cpu']:.0f} % CPU (summed); bare "
                f"{step['bare_rate']:,.0f}/s at {step['bare_cpu']:.0f} %"
                + ("" if step["saturated"] else " (not saturated: a lower bound)")
                + (f"; refused {step['rejected']}" if step["rejected"] else "")
                + (f"; noted {step['noted']}" if step["noted"] else "")
            )
            # Killed, not stopped: a worker told to stop first takes the telemetry still
            # queued from the saturation step (10-12 s here), and this count's database
            # is not used again.
            for s in servers:
                s.proc.kill()
                s.proc.wait(10)
            servers = []
        return {"outlets": args.outlets, "rows": rows}
    finally:
        for s in servers:
            stop(s.proc, timeout=20)
        if fleet is not None:
            fleet.stop()
        if bare_proc is not None and bare_proc.is_alive():
            bare_proc.kill()
        broker.stop()
        pg.stop()


def _per_cpu_s(row: dict[str, Any]) -> float:
    return float(row["accepted"]) / max(1e-9, row["cpu"] / 100)


def _even_per_cpu_s(row: dict[str, Any]) -> float:
    return float(row["even_accepted"]) / max(1e-9, row["even_cpu"] / 100)


def report_workers(res: list[dict[str, Any]]) -> str:
    r0 = res[0]
    rows = []
    base = [next(x for x in r["rows"] if x["workers"] == 1) for r in res]
    for i, row in enumerate(r0["rows"]):
        vals = [r["rows"][i] for r in res]
        m = lambda key: median([v[key] for v in vals])  # noqa: E731
        per_cpu = median([_per_cpu_s(v) for v in vals])
        bare_per_cpu = median([v["bare_rate"] / max(1e-9, v["bare_cpu"] / 100) for v in vals])
        rows.append(
            [
                row["workers"],
                m("births_s"),
                m("first_s"),
                m("even_accepted"),
                m("even_cpu"),
                median(
                    [
                        _even_per_cpu_s(v) / _even_per_cpu_s(b)
                        for v, b in zip(vals, base, strict=True)
                    ]
                ),
                m("offered"),
                m("accepted"),
                median([v["accepted"] / b["accepted"] for v, b in zip(vals, base, strict=True)]),
                m("cpu"),
                per_cpu,
                median([_per_cpu_s(v) / _per_cpu_s(b) for v, b in zip(vals, base, strict=True)]),
                per_cpu / bare_per_cpu if bare_per_cpu else float("nan"),
                m("rss"),
                "yes" if all(v["saturated"] for v in vals) else "no (lower bound)",
            ]
        )
    return (
        f"Outlets: {r0['outlets']:,} × 5 devices, PostgreSQL, one share group; "
        f"{len(res)} run(s), medians.\n\n"
        + table(
            [
                "workers",
                "births online s",
                "first rounds s",
                "even step msg/s",
                "even step CPU % (sum)",
                "even step per CPU-s × one",
                "offered msg/s",
                "accepted msg/s",
                "× one worker",
                "CPU % (sum)",
                "msgs per server CPU-s",
                "per CPU-s × one worker",
                "server/bare msgs per CPU-s",
                "RSS MiB (sum)",
                "saturated",
            ],
            rows,
        )
    )


def figures_workers(res: list[dict[str, Any]]) -> list[Figure]:
    """Per worker count: capacity (baseline one worker, when one worker was saturated;
    goal 1.7 × for two), messages per server CPU-second (baseline one worker's), births
    online."""
    out: list[Figure] = []
    counts = [row["workers"] for row in res[0]["rows"]]
    for i, n in enumerate(counts):
        vals = [r["rows"][i] for r in res]
        base = [r["rows"][0] for r in res]
        # One worker that kept up gives only a lower bound: no ratio to judge against.
        judged = n > 1 and all(b["saturated"] for b in base)
        one_rate = median([b["accepted"] for b in base]) if judged else None
        one_cpu = median([_per_cpu_s(b) for b in base]) if n > 1 else None
        out += [
            Figure(
                f"ingest.workers_{n}.accepted_msg_s",
                median([v["accepted"] for v in vals]),
                "msg/s",
                baseline=one_rate,
                goal=1.7 if n == 2 else None,
                goal_on="ratio",
            ),
            Figure(
                f"ingest.workers_{n}.msgs_per_cpu_s",
                median([_per_cpu_s(v) for v in vals]),
                "msg/CPU-s",
                baseline=one_cpu,
            ),
            Figure(
                f"ingest.workers_{n}.even_msgs_per_cpu_s",
                median([_even_per_cpu_s(v) for v in vals]),
                "msg/CPU-s",
                baseline=median([_even_per_cpu_s(b) for b in base]) if n > 1 else None,
            ),
            Figure(
                f"ingest.workers_{n}.births_online_s",
                median([v["births_s"] for v in vals]),
                "s",
                goal=15 if res[0]["outlets"] <= 10_000 else 60,
                higher=False,
            ),
        ]
    return out
