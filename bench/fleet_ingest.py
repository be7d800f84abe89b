"""Fleet ingest at scale (issues 5 and 17): N outlets x 5 devices against the real server.

Every simulated outlet is its own MQTT connection, driven from a few simulator
processes (bench/_fleet_sim.py); past one Mosquitto's descriptor limit they connect to
edge brokers bridged to the core (bench/_brokers.py). Each outlet publishes a birth
(QoS 1, five devices) and then telemetry with the five devices' health (QoS 0) every
30 s, time-compressed: the benchmark walks a ladder of compressions (offered msg/s)
and, at each step, samples the real ``fleet-server run``'s ``GET /api/v1/ingest/stats``
(received, accepted, queue_depth) and its CPU and RSS. A bare paho subscriber (a
separate process that only counts) is subscribed to the same topics on the same broker
in the same run. Then the broker restarts (births back online), the fleet holds the
real cadence (the backlog's slope, bench/_backlog.py), and one real ``edge-agent run``
is killed while the fleet keeps sending: the time to the outlet shown ``offline``
(server-sent events on /api/v1/stream, then GET the outlet).

``--workers N[,M]`` measures ingest workers in a share group on PostgreSQL instead
(bench/_ingest_workers.py). Otherwise the server runs on SQLite; always with
GOVEDGE_API_AUTH=off (benchmark only).

    python bench/fleet_ingest.py [--quick] [--outlets N] [--workers N,M] [--json FILE] [--write-doc]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _backlog import hold
from _brokers import Brokers
from _common import (
    ProcSampler,
    machine,
    median,
    poll,
    raise_nofile,
    start_agent,
    start_server,
    stop,
    table,
    update_doc,
)
from _figures import Figure, write_figures
from _fleet_sim import Fleet, processes_for, simulator
from _ingest_probe import count_online, start_bare
from _ingest_workers import figures_workers, report_workers, run_workers
from _procs import ProcGroup

__all__ = ["simulator"]  # bench/_clerk_load.py runs one simulator process of its own

REAL_PERIOD_S = 30.0
# Offered msg/s, walked up until a step is not sustained (the goal is 15,000); --quick
# takes bigger steps. It starts at 1,000: on a slow day of this shared machine one worker
# did not sustain 2,000 right after the births, and a ladder that fails its first step
# measures nothing.
LADDER = "1000,2000,3000,4000,5000,6000,8000,10000,12500,15000,20000"
QUICK_LADDER = "1000,2000,4000,6000,8000,10000,15000,20000"


# -- the benchmark ----------------------------------------------------------------------------


def run_ladder(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    broker = Brokers(work, args.outlets, args.per_broker)
    broker.start()
    procs: list[Any] = []
    server = None
    try:
        server = start_server(broker.url, work, env={"GOVEDGE_LOG_LEVEL": "WARNING"})
        bare, bare_count = start_bare(broker.port)
        procs.append(bare)
        t_conn = time.monotonic()
        procs_n = args.sim_procs or processes_for(args.outlets, len(broker.outlet_ports))
        fleet = Fleet(broker.outlet_ports, args.outlets, procs_n)
        procs += fleet.procs
        if not fleet.wait_ready(600):
            raise RuntimeError("simulator did not connect its outlets")
        _, connected = fleet.counts()
        connect_s = time.monotonic() - t_conn
        print(f"{connected:,} of {args.outlets:,} outlets connected in {connect_s:.1f} s")

        # births: record the ingest progress (accepted births over time)
        t_b, births_curve = time.monotonic(), []
        while True:
            s = server.stats()
            births_curve.append((time.monotonic() - t_b, s["accepted"]))
            if s["queue_depth"] == 0 and s["accepted"] >= connected:
                break
            if time.monotonic() - t_b > args.birth_timeout:
                raise RuntimeError(
                    f"births not ingested within {args.birth_timeout} s: {births_curve[-1]}"
                )
            if len(births_curve) % 20 == 1:
                print(f"  births accepted after {births_curve[-1][0]:.0f} s: {s['accepted']:,}")
            time.sleep(0.5)
        # Births are ingested while the outlets connect: count from the first connect.
        births_s = time.monotonic() - t_conn
        print(
            f"all births ingested {births_s:.1f} s after the first connect "
            f"({connected / births_s:,.0f}/s); online={count_online(server)}"
        )

        s_srv, s_bare, s_mosq = (
            ProcSampler(server.proc.pid),
            ProcSampler(bare.pid),
            ProcGroup(broker.pids),
        )
        s_sim = ProcGroup(fleet.pids)
        steps = []
        failed = 0
        for rate in args.rates:
            period = args.outlets / rate
            fleet.set_period(period)
            time.sleep(args.warmup)
            st0, b0 = server.stats(), bare_count.value
            sent0, _ = fleet.counts()
            for s in (s_srv, s_bare, s_mosq, s_sim):
                s.mark()
            t0 = time.monotonic()
            depths, rss_max = [], 0.0
            while time.monotonic() - t0 < args.step_s:
                time.sleep(1)
                depths.append(server.stats()["queue_depth"])
                rss_max = max(rss_max, s_srv.p.memory_info().rss / 2**20)
            dt = time.monotonic() - t0
            st1, b1 = server.stats(), bare_count.value
            sent1, _ = fleet.counts()
            cpu_srv, rss = s_srv.mark()
            cpu_bare, bare_rss = s_bare.mark()
            cpu_mosq, _ = s_mosq.mark()
            cpu_sim, _ = s_sim.mark()
            offered = (sent1 - sent0) / dt
            srv_in = (st1["received"] - st0["received"]) / dt
            srv_ok = (st1["accepted"] - st0["accepted"]) / dt
            bare_rate = (b1 - b0) / dt
            growth = _slope(depths)
            overloaded = st1["rejected"].get("overloaded", 0) - st0["rejected"].get("overloaded", 0)
            limited = st1["rejected"].get("rate_limited", 0) - st0["rejected"].get(
                "rate_limited", 0
            )
            # zero backlog growth: no upward trend beyond noise, never more than ~2 s queued,
            # and the server accepts what is offered
            sustained = (
                growth <= max(5.0, 0.02 * offered)
                and srv_ok >= 0.97 * offered
                and overloaded == 0
                and max(depths) < 2 * offered + 100
            )
            row = {
                "target": rate,
                "offered": offered,
                "server_received": srv_in,
                "server_accepted": srv_ok,
                "depth_end": depths[-1],
                "depth_growth_per_s": growth,
                "server_cpu": cpu_srv,
                "server_rss": rss_max,
                "bare_rate": bare_rate,
                "bare_cpu": cpu_bare,
                "bare_rss": bare_rss,
                "mosq_cpu": cpu_mosq,
                "sim_cpu": cpu_sim,
                "overloaded": overloaded,
                "rate_limited": limited,
                "sustained": sustained,
            }
            steps.append(row)
            print(
                f"  target {rate:>6}/s offered {offered:8.0f} server {srv_ok:8.0f} depth {depths[-1]:>7} "
                f"(+{growth:.0f}/s) srv cpu {cpu_srv:5.0f}% rss {rss_max:5.0f} MiB | bare {bare_rate:8.0f} "
                f"cpu {cpu_bare:4.0f}% | mosq {cpu_mosq:4.0f}% sim {cpu_sim:4.0f}% -> {'OK' if sustained else 'NOT sustained'}"
            )
            if not sustained:
                failed += 1
                fleet.set_period(0)
                # let the queue drain before the next (or the kill test)
                try:
                    poll(lambda: server.stats()["queue_depth"] == 0, timeout=120, interval=1)
                except TimeoutError:
                    print("  queue did not drain within 120 s")
                if failed >= 1:
                    break
        restart = restart_births(args, broker, server, fleet, connected)
        # the whole fleet at the real 30 s cadence: does the server keep up?
        cadence = hold(fleet, [server], args.hold, REAL_PERIOD_S) if args.hold else None
        if cadence:
            print(
                f"real cadence for {cadence['seconds']:.0f} s: offered {cadence['offered']:,.0f}/s, "
                f"accepted {cadence['accepted']:,.0f}/s, backlog {cadence['backlog_end']:,.0f} at "
                f"the end, growing {cadence['growth_per_s']:+.1f} msg/s"
            )
        # the kill test, with the fleet at the real 30 s cadence
        fleet.set_period(REAL_PERIOD_S)
        kills = kill_test(args, work, broker.url, server) if not args.no_kill else []
        fleet.stop()
        return {
            "outlets": args.outlets,
            "connected": connected,
            "connect_s": connect_s,
            "steps": steps,
            "kills": kills,
            "births_s": births_s,
            "restart": restart,
            "cadence": cadence,
            "brokers": broker.describe(),
            "server_rss_idle": s_srv.p.memory_info().rss / 2**20,
        }
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        if server is not None:
            stop(server.proc)
        broker.stop()


def restart_births(
    args: argparse.Namespace, broker: Any, server: Any, fleet: Fleet, outlets: int
) -> dict[str, Any]:
    """Restart Mosquitto (persistence off: it forgets everything); every simulated outlet
    reconnects with a new session and births when it sees the server online. Returns
    the seconds from the broker's restart until the server counts them all online."""
    fleet.set_period(0)
    time.sleep(1)
    broker.restart()
    t0 = time.monotonic()
    fleet.start_reconnect()
    # The server notices the loss (all outlets stale), then counts births back.
    online, curve, noticed = -1, [], False
    while time.monotonic() - t0 < args.birth_timeout:
        online = count_online(server)
        curve.append((time.monotonic() - t0, online))
        noticed = noticed or 0 <= online < outlets
        if noticed and online >= outlets:
            break
        time.sleep(0.25)
    t_end = time.monotonic()
    seconds = t_end - t0
    reconnect_s, reconnected = fleet.reconnected()
    born, last_birth = fleet.born()
    # What the server adds: from the simulator's last birth to all counted online (the
    # simulator reconnecting 10,000 clients from one process is slower than the server).
    lag = t_end - last_birth
    steps = ", ".join(f"{t:.0f} s: {n:,}" for t, n in curve[:: max(1, len(curve) // 12)])
    print(
        f"  reconnecting took the simulator {reconnect_s:.1f} s; {born:,} births sent, the last "
        f"{lag:.1f} s before all were online; online after {steps}"
    )
    done = noticed and online >= outlets
    print(
        f"broker restart: {reconnected:,} outlets reconnected; "
        + (f"all {outlets:,} online {seconds:.1f} s after the restart" if done else
           f"only {online:,} of {outlets:,} online after {seconds:.0f} s")
    )  # fmt: skip
    return {
        "seconds": seconds if done else float("nan"),
        "online": online,
        "curve": curve,
        "reconnect_s": reconnect_s,
        "server_lag_s": lag if done else float("nan"),
    }


def _slope(ys: list[float]) -> float:
    """Least-squares slope per sample (samples are 1 s apart)."""
    n = len(ys)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(ys) / n
    return sum((i - mx) * (y - my) for i, y in enumerate(ys)) / sum((i - mx) ** 2 for i in range(n))


class SseWatch:
    """Listens on /api/v1/stream; on each change fetches one outlet's state."""

    def __init__(self, url: str, outlet: str) -> None:
        self.url, self.outlet = url, outlet
        self.offline_at: float | None = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=httpx.Timeout(5, read=None)) as client:
            with client.stream("GET", f"{self.url}/api/v1/stream") as r:
                for line in r.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith("event: change"):
                        got = client.get(f"{self.url}/api/v1/outlets/{self.outlet}")
                        if got.status_code == 200 and got.json()["state"] == "offline":
                            self.offline_at = time.monotonic()
                            return

    def close(self) -> None:
        self._stop.set()


def kill_test(
    args: argparse.Namespace, work: Path, mqtt_url: str, server: Any
) -> list[dict[str, Any]]:
    out = []
    for k in args.keepalives:
        for how in ("SIGKILL", "SIGSTOP"):
            for rep in range(args.kill_reps):
                outlet = f"killme-{how}-k{k}-{rep}"
                proc = start_agent(
                    mqtt_url, outlet, work / "agents" / outlet, keepalive=k, telemetry_interval=5
                )
                try:
                    poll(
                        lambda: server.state(outlet) == "online",
                        timeout=60,
                        interval=0.1,
                        what=f"{outlet} online",
                    )
                    time.sleep(0.5)
                    watch = SseWatch(server.url, outlet)
                    time.sleep(0.3)
                    t_kill = time.monotonic()
                    if how == "SIGKILL":
                        proc.send_signal(signal.SIGKILL)
                        proc.wait(5)
                    else:  # a hung or cut-off PC: the TCP connection stays open
                        proc.send_signal(signal.SIGSTOP)
                    poll(
                        lambda: server.state(outlet) == "offline",
                        timeout=10 * k + 30,
                        interval=0.05,
                        what=f"{outlet} offline",
                    )
                    t_poll = time.monotonic() - t_kill
                    watch.thread.join(5)
                    t_sse = None if watch.offline_at is None else watch.offline_at - t_kill
                    watch.close()
                    out.append({"how": how, "keepalive": k, "sse_s": t_sse, "poll_s": t_poll})
                    print(
                        f"  {how} keepalive {k} s: offline via SSE after "
                        f"{'n/a' if t_sse is None else f'{t_sse:.2f}'} s (API poll {t_poll:.2f} s)"
                    )
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait(5)
    return out


def report(res: list[dict[str, Any]], args: argparse.Namespace) -> str:
    r0 = res[0]
    lines = [
        f"Outlets: {r0['outlets']:,} × 5 devices on {r0['brokers']} "
        f"({r0['connected']:,} connected in "
        f"{median([r['connect_s'] for r in res]):.0f} s; all their births ingested "
        f"{median([r['births_s'] for r in res]):.0f} s after the first connect), "
        f"{len(res)} run(s); medians over runs.",
        "",
    ]
    rows = []
    for i, step in enumerate(r0["steps"]):
        vals = [r["steps"][i] for r in res if i < len(r["steps"])]
        m = lambda key: median([v[key] for v in vals])  # noqa: E731
        srv_per_cpu = m("server_accepted") / max(1e-9, m("server_cpu") / 100)
        bare_per_cpu = m("bare_rate") / max(1e-9, m("bare_cpu") / 100)
        rows.append(
            [
                step["target"],
                m("offered"),
                m("server_accepted"),
                m("depth_growth_per_s"),
                m("server_cpu"),
                m("server_rss"),
                m("bare_rate"),
                m("bare_cpu"),
                srv_per_cpu / bare_per_cpu if bare_per_cpu else float("nan"),
                m("mosq_cpu"),
                m("sim_cpu"),
                "yes" if all(v["sustained"] for v in vals) else "no",
            ]
        )
    lines.append(
        table(
            [
                "target msg/s",
                "offered msg/s",
                "server accepted msg/s",
                "queue growth /s",
                "server CPU %",
                "server RSS MiB",
                "bare sub msg/s",
                "bare CPU %",
                "server/bare msgs per CPU-s",
                "mosquitto CPU %",
                "simulator CPU %",
                "sustained",
            ],
            rows,
        )
    )
    ok = [row for row in rows if row[-1] == "yes"]
    best = max((row[2] for row in ok), default=0.0)
    lines += ["", f"Highest sustained (zero backlog growth): **{best:,.0f} msg/s**."]
    holds = [r["cadence"] for r in res if r["cadence"]]
    if holds:
        h = {k: median([x[k] for x in holds]) for k in holds[0]}
        lines += [
            "",
            f"The whole fleet at the real 30 s cadence for {h['seconds']:.0f} s: offered "
            f"{h['offered']:,.0f} msg/s, recorded {h['accepted']:,.0f} msg/s; backlog (sent − "
            f"recorded) {h['backlog_end']:,.0f} at the end, at most {h['backlog_max']:,.0f}, "
            f"its slope **{h['growth_per_s']:+.1f} msg/s** "
            f"({100 * h['growth_per_s'] / max(1e-9, h['offered']):+.2f} % of the offered rate).",
        ]
    restart = median([r["restart"]["seconds"] for r in res])
    reconnect = median([r["restart"]["reconnect_s"] for r in res])
    lag = median([r["restart"]["server_lag_s"] for r in res])
    lines += [
        "",
        f"Broker restart (persistence off), every outlet reconnecting with a new session and "
        f"birthing on the server's online state: all {r0['connected']:,} online again "
        f"**{restart:.1f} s** after the restart; the simulator took {reconnect:.1f} s to "
        f"reconnect them all, and the server counted the last one online {lag:.1f} s after "
        f"the simulator sent the last birth.",
    ]
    kills = [k for r in res for k in r["kills"]]
    if kills:
        krows = []
        for how, k in sorted({(x["how"], x["keepalive"]) for x in kills}):
            xs = [x for x in kills if x["keepalive"] == k and x["how"] == how]
            sse = [x["sse_s"] for x in xs if x["sse_s"] is not None]
            krows.append(
                [
                    how,
                    k,
                    len(xs),
                    median(sse),
                    max(sse) if sse else float("nan"),
                    median([x["poll_s"] for x in xs]),
                    1.5 * k,
                ]
            )
        lines += [
            "",
            "Agent death → outlet `offline` (fleet connected, sending at the real 30 s cadence). "
            "SIGKILL: the kernel closes the socket, the broker sees it at once. SIGSTOP: a hung PC "
            "or cut cable; the broker waits for the keepalive:",
            "",
            table(
                [
                    "agent",
                    "keepalive s",
                    "samples",
                    "via SSE median s",
                    "via SSE max s",
                    "via API poll median s",
                    "1.5 × keepalive s",
                ],
                krows,
            ),
        ]
    return "\n".join(lines)


def figures(res: list[dict[str, Any]]) -> list[Figure]:
    """The run's figures for ``--json`` (bench/_figures.py), medians over runs.

    CPU per message is taken at the highest sustained step, where the fixed costs (the
    alert engine, the web server idling) weigh least, against the bare subscriber's in
    the same step of the same run.
    """
    outlets = res[0]["outlets"]
    best: list[dict[str, Any]] = []
    for r in res:
        ok = [step for step in r["steps"] if step["sustained"]]
        if ok:
            best.append(max(ok, key=lambda step: step["server_accepted"]))
    server_us = median([1e4 * b["server_cpu"] / b["server_accepted"] for b in best])
    bare_us = median([1e4 * b["bare_cpu"] / max(1e-9, b["bare_rate"]) for b in best])
    size = f"{outlets // 1000}k" if outlets % 1000 == 0 else str(outlets)
    # The rate goals are for 10,000 outlets; other sizes are measured, not judged
    # (at 50,000 the ladder offers only the real cadence's rate).
    judged = outlets == 10_000
    return [
        Figure(
            "ingest.sustained_msg_s",
            median([b["server_accepted"] for b in best]) if best else 0.0,
            "msg/s",
            goal=15_000 if judged else None,
        ),
        Figure(
            "ingest.cpu_per_msg_vs_bare",
            server_us,
            "µs CPU/msg",
            baseline=bare_us,
            goal=3 if judged else None,
            goal_on="ratio",
            higher=False,
        ),
        Figure(
            f"ingest.births_server_lag_{size}_s",
            median([r["restart"]["server_lag_s"] for r in res]),
            "s",
        ),
        Figure(
            f"ingest.births_online_{size}_s",
            median([r["restart"]["seconds"] for r in res]),
            "s",
            goal=15 if outlets <= 10_000 else 60,
            higher=False,
        ),
        *cadence_figures(res, size),
    ]


def cadence_figures(res: list[dict[str, Any]], size: str) -> list[Figure]:
    """Backlog growth at the real cadence: its slope against the offered rate, goal ≤ 1 %."""
    holds = [r["cadence"] for r in res if r["cadence"]]
    if not holds:
        return []
    return [
        Figure(
            f"ingest.backlog_growth_{size}_msg_s",
            median([h["growth_per_s"] for h in holds]),
            "msg/s",
            baseline=median([h["offered"] for h in holds]),
            goal=0.01,
            goal_on="ratio",
            higher=False,
        )
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--outlets", type=int)
    ap.add_argument("--runs", type=int)
    ap.add_argument("--rates", type=str, help="comma-separated offered msg/s ladder")
    ap.add_argument("--write-doc", action="store_true")
    ap.add_argument("--json", type=Path, help="write the figures there (bench/_figures.py)")
    ap.add_argument("--birth-timeout", type=float, default=600)
    ap.add_argument("--no-kill", action="store_true", help="skip the agent death timings")
    ap.add_argument("--sim-procs", type=int, help="simulator processes (default: by outlets)")
    ap.add_argument("--per-broker", type=int, help="outlets per Mosquitto (default: its fd limit)")
    ap.add_argument("--hold", type=float, help="seconds at the real 30 s cadence (backlog)")
    ap.add_argument("--workers", help="N or N,M,...: ingest workers on PostgreSQL, 1 included")
    ap.add_argument("--offer", type=float, help="--workers: msg/s offered to one worker")
    args = ap.parse_args()
    if args.quick:  # ~1 minute: the full fleet, short steps from 2,000 msg/s up
        args.outlets = args.outlets or 10_000
        args.rates = [int(x) for x in (args.rates or QUICK_LADDER).split(",")]
        args.step_s, args.warmup, args.runs = 6, 2, args.runs or 1
        args.keepalives, args.kill_reps = [1], 1
    else:
        args.outlets = args.outlets or 10_000
        args.rates = [int(x) for x in (args.rates or LADDER).split(",")]
        args.step_s, args.warmup, args.runs = 20, 3, args.runs or 1
        args.keepalives, args.kill_reps = [2, 5], 3
    if args.workers:  # an even and a saturation step per worker count (_ingest_workers.py)
        args.step_s, args.offer = (6 if args.quick else 30), args.offer or 4000
        args.warmup = 1 if args.quick else args.warmup
    if args.hold is None:  # the real cadence is the point of a run past 10,000 outlets
        args.hold = 0 if args.outlets <= 10_000 else (45 if args.quick else 180)
    nofile = raise_nofile_to(4 * args.outlets + 1000)
    print(f"{machine()}; RLIMIT_NOFILE {nofile}")
    results = []
    for run in range(args.runs):
        work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
        print(f"run {run + 1}/{args.runs} in {work}")
        try:
            results.append((run_workers if args.workers else run_ladder)(args, work))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    text = report_workers(results) if args.workers else report(results, args)
    print()
    print(text)
    write_figures(args.json, figures_workers(results) if args.workers else figures(results))
    if args.write_doc:
        mode = "--quick" if args.quick else "full"
        section = "fleet_ingest-workers" if args.workers else "fleet_ingest"
        if args.outlets > 10_000 and not args.workers:
            section += f"-{args.outlets // 1000}k"
        update_doc(
            f"{section}{'-quick' if args.quick else ''}",
            f"### Results ({mode}, {time.strftime('%Y-%m-%d')}; {machine()})\n\n{text}",
        )


def raise_nofile_to(want: int) -> int:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    except (ValueError, OSError):
        raise_nofile()
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


if __name__ == "__main__":
    main()
