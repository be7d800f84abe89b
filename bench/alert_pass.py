"""Alert pass cost in the fleet server's process (issue 17: clerk → upstream latency).

The alert engine evaluates the whole fleet every 5 s in the leading server process,
whose ingest and delivery threads share its interpreter lock; whatever Python work the
pass does there, a clerk's submission may wait for. This measures, per pass, the CPU
the *server's process* spends (``time.process_time`` of this process, which plays the
server: the engine runs here exactly as in ``fleet-server run``), the pass's wall time,
and the CPU of the child process that applies the per-outlet rules
(``alerts/outlet_pass.py``), for:

- the per-outlet rules in the engine's thread (``GOVEDGE_ALERT_EVAL_PROCESS=false``,
  paced) against the same in the child process (the default), and
- a healthy fleet (no alert open) against a fleet whose every outlet is offline (an
  alert open per outlet, its value refreshed each pass: a region's network down).

Real SQLite file, the real engine and child; outlets are rows (no MQTT: the pass reads
the database only).

    python bench/alert_pass.py [--quick] [--outlets N] [--passes K] [--json FILE]
                               [--write-doc]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import machine, median, table, update_doc
from _figures import Figure, load_average_ok, write_figures
from sqlalchemy import update

from fleet_server.alerts.engine import AlertEngine
from fleet_server.alerts.outlet_pass import OutletPassProcess
from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.migrate import upgrade
from fleet_server.models import Agent, Outlet


def _fleet(path: Path, outlets: int) -> None:
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    ago = datetime.now(UTC) - timedelta(hours=2)
    with make_sessionmaker(engine).begin() as session:
        for i in range(outlets):
            outlet = f"bench-{i:06d}"
            session.add(Outlet(id=outlet, display_name=None, created_at=ago))
            session.add(
                Agent(outlet_id=outlet, state="online", state_since=ago, session=1,
                      last_seq=0, last_seen=ago, devices=[], last_metrics={})
            )  # fmt: skip
    engine.dispose()


def _measure(path: Path, *, child: bool, offline: bool, passes: int) -> dict[str, float]:
    engine = make_engine(f"sqlite:///{path}")
    sessions = make_sessionmaker(engine)
    state = "offline" if offline else "online"
    with sessions.begin() as session:
        session.execute(update(Agent).values(state=state))
    outlet_pass = (
        OutletPassProcess(f"sqlite:///{path}", timezone="Asia/Shanghai", timeout_s=300)
        if child
        else None
    )
    alerts = AlertEngine(
        sessions=sessions, interval_s=3600, timezone="Asia/Shanghai", outlet_pass=outlet_pass
    )
    # Every outlet has no opening hours: "offline" alerts at any hour.
    alerts.evaluate_once()  # opens (or resolves) the alerts, starts the child: not counted
    server_cpu, wall, child_cpu = [], [], []
    for _ in range(passes):
        kid = psutil.Process(outlet_pass.pid) if outlet_pass and outlet_pass.pid else None
        k0 = sum(kid.cpu_times()[:2]) if kid else 0.0
        c0, t0 = time.process_time(), time.perf_counter()
        alerts.evaluate_once()
        wall.append(time.perf_counter() - t0)
        server_cpu.append(time.process_time() - c0)
        child_cpu.append(sum(kid.cpu_times()[:2]) - k0 if kid else 0.0)
    open_count = alerts.open_count
    alerts.stop(timeout=10)
    engine.dispose()
    return {
        "server_cpu_ms": median(server_cpu) * 1000,
        "wall_ms": median(wall) * 1000,
        "child_cpu_ms": median(child_cpu) * 1000,
        "open": float(open_count),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--outlets", type=int, default=None)
    ap.add_argument("--passes", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--write-doc", action="store_true")
    args = ap.parse_args()
    outlets = args.outlets or (2_000 if args.quick else 10_000)
    passes = args.passes or (3 if args.quick else 5)
    load0, _ = load_average_ok()
    print(machine())
    results: dict[tuple[bool, bool], dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-alerts-") as work:
        path = Path(work) / "fleet.db"
        _fleet(path, outlets)
        for offline in (False, True):
            for child in (False, True):
                res = _measure(path, child=child, offline=offline, passes=passes)
                results[(offline, child)] = res
                print(
                    f"  {'all offline' if offline else 'healthy'}, rules in "
                    f"{'a child process' if child else 'the thread'}: server CPU "
                    f"{res['server_cpu_ms']:.0f} ms/pass, wall {res['wall_ms']:.0f} ms, child "
                    f"CPU {res['child_cpu_ms']:.0f} ms, {res['open']:.0f} open"
                )
    load1, _ = load_average_ok()
    rows = [
        [
            "every outlet offline" if offline else "healthy",
            "child process" if child else "engine thread (paced)",
            f"{res['open']:,.0f}",
            res["server_cpu_ms"],
            res["wall_ms"],
            res["child_cpu_ms"],
        ]
        for (offline, child), res in results.items()
    ]
    body = "\n".join(
        [
            f"### Results ({'quick' if args.quick else 'full'}, "
            f"{datetime.now(UTC):%Y-%m-%d}; {machine()})",
            "",
            f"{outlets:,} outlets, median of {passes} passes. Machine load (1-min load "
            f"average, 2 cores) {load0:.1f} at the start, {load1:.1f} at the end.",
            "",
            table(
                [
                    "fleet",
                    "per-outlet rules in",
                    "alerts open",
                    "server CPU ms/pass",
                    "pass wall ms",
                    "child CPU ms/pass",
                ],
                rows,
            ),
        ]
    )
    print()
    print(body)
    figures = []
    for offline in (False, True):
        tag = "offline" if offline else "healthy"
        thread, kid = results[(offline, False)], results[(offline, True)]
        figures.append(
            Figure(
                key=f"alert_pass.{tag}.server_cpu_ms",
                value=kid["server_cpu_ms"],
                unit="ms",
                baseline=thread["server_cpu_ms"],
                higher=False,
            )
        )
    write_figures(args.json, figures)
    if args.write_doc:
        update_doc("alert_pass", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
