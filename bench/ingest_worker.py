"""The ingest worker's CPU per telemetry message, in-process (issue 17).

The fleet bench (``fleet_ingest.py``) measures the whole server against a broker and a
simulated fleet; on a shared 2-core machine its rates swing with the other processes.
This one measures what the ingest worker thread itself costs per message, and nothing
else: the real ``Ingest`` (its ``Worker``, ``PresenceTracker``, ``HealthRecorder``,
config and update report desks) on a migrated SQLite file, fed the simulator's own
births and telemetry (``_fleet_sim``: five devices, the ID-card reader's good-read count
moving in every message) in batches of the size the worker takes at a few thousand
messages a second. No broker and no paho: their cost is the bare subscriber's in the
fleet bench. CPU is this process's ``time.process_time`` (the worker runs here).

The baseline, measured in the same run on the same payloads: one ``json.loads`` per
message (the least any Python consumer of these messages does). The ratio says how many
JSON parses the worker's whole job costs; it moves with the code, not with the machine.

    python bench/ingest_worker.py [--quick] [--outlets N] [--rounds K] [--batch B]
                                  [--json FILE] [--write-doc]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import machine, table, update_doc
from _figures import Figure, load_average_ok, write_figures
from _fleet_sim import TELEMETRY_TEMPLATE, birth_payload

from fleet_server.campaigns.reports import UpdateReports
from fleet_server.campaigns.stats import CampaignStats
from fleet_server.config.reports import ReportDesk
from fleet_server.config.stats import ConfigStats
from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.health.live import LiveHub
from fleet_server.health.recorder import HealthRecorder
from fleet_server.ingest.client import Ingest
from fleet_server.ingest.queue import Received
from fleet_server.migrate import upgrade
from fleet_server.settings import Settings


class _Fleet:
    """The simulated outlets' messages, as the paho thread would queue them."""

    def __init__(self, outlets: int) -> None:
        self.ids = [f"sim{i:06d}" for i in range(outlets)]
        self.seq = [0] * outlets

    def births(self) -> list[Received]:
        now = datetime.now(UTC)
        return [Received(f"govedge/v1/{o}/up/birth", birth_payload(o, 1), now) for o in self.ids]

    def telemetry(self, start: int, count: int) -> list[Received]:
        now = datetime.now(UTC)
        batch = []
        for k in range(count):
            j = (start + k) % len(self.ids)
            self.seq[j] += 1
            seq, outlet = self.seq[j], self.ids[j]
            payload = TELEMETRY_TEMPLATE % (
                int.from_bytes(os.urandom(16)), time.time_ns() // 1_000_000, outlet, 1, seq,
                120 + seq,
            )  # fmt: skip
            batch.append(Received(f"govedge/v1/{outlet}/up/telemetry", payload.encode(), now))
        return batch


def _ingest(work: Path) -> Ingest:
    url = f"sqlite:///{work / 'fleet.db'}"
    engine = make_engine(url)
    upgrade(engine)
    settings = Settings(database_url=url, mqtt_url="mqtt://127.0.0.1:1", pki_dir=work / "pki")
    recorder = HealthRecorder(
        history_interval_s=settings.health_history_interval_s,
        retention=timedelta(hours=settings.health_retention_hours),
        live=LiveHub(),
    )
    return Ingest(
        settings,
        sessions=make_sessionmaker(engine),
        observer=recorder,
        reports=ReportDesk(stats=ConfigStats()),
        updates=UpdateReports(stats=CampaignStats()),
    )


def measure(outlets: int, rounds: int, batch: int) -> dict[str, float]:
    """CPU µs per message: the worker, and ``json.loads`` of the same payloads."""
    with tempfile.TemporaryDirectory(prefix="bench-ingest-worker-") as tmp:
        ingest = _ingest(Path(tmp))
        worker = ingest._worker  # the thread's body, driven here batch by batch
        fleet = _Fleet(outlets)
        births = fleet.births()
        for i in range(0, outlets, 500):
            worker.process(list(births[i : i + 500]))
        # One warm round: every outlet's first telemetry (its device rows first written).
        position = 0
        for _ in range(outlets // batch):
            worker.process(list(fleet.telemetry(position, batch)))
            position += batch
        batches = []
        for _ in range(rounds * outlets // batch):
            batches.append(fleet.telemetry(position, batch))
            position += batch
        messages = sum(len(b) for b in batches)
        accepted0 = ingest.stats.snapshot().accepted
        cpu0 = time.process_time()
        for items in batches:
            worker.process(list(items))
        worker_s = time.process_time() - cpu0
        accepted = ingest.stats.snapshot().accepted - accepted0
        if accepted != messages:
            raise RuntimeError(f"the worker accepted {accepted} of {messages} messages")
        cpu0 = time.process_time()
        for items in batches:
            for item in items:
                json.loads(item.payload)
        parse_s = time.process_time() - cpu0
    return {
        "messages": float(messages),
        "worker_us": worker_s / messages * 1e6,
        "json_us": parse_s / messages * 1e6,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--outlets", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None, help="telemetry rounds measured")
    ap.add_argument("--batch", type=int, default=250, help="messages per worker batch")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--write-doc", action="store_true")
    args = ap.parse_args()
    outlets = args.outlets or (2_000 if args.quick else 10_000)
    rounds = args.rounds or (5 if args.quick else 10)
    load0, _ = load_average_ok()
    print(machine())
    res = measure(outlets, rounds, args.batch)
    load1, _ = load_average_ok()
    ratio = res["worker_us"] / res["json_us"]
    body = "\n".join(
        [
            f"### Results ({'quick' if args.quick else 'full'}, "
            f"{datetime.now(UTC):%Y-%m-%d}; {machine()})",
            "",
            f"{outlets:,} outlets × 5 devices, {rounds} telemetry rounds after one warm round "
            f"({res['messages']:,.0f} messages measured, batches of {args.batch}). Machine "
            f"load (1-min load average, 2 cores) {load0:.1f} at the start, {load1:.1f} at the "
            "end.",
            "",
            table(
                ["worker CPU µs/msg", "json.loads µs/msg (same payloads)", "worker ÷ json.loads"],
                [[res["worker_us"], res["json_us"], ratio]],
            ),
        ]
    )
    print()
    print(body)
    write_figures(
        args.json,
        [
            Figure(
                key="ingest_worker.cpu_us_per_msg",
                value=res["worker_us"],
                unit="µs CPU/msg",
                baseline=res["json_us"],
                higher=False,
            )
        ],
    )
    if args.write_doc:
        update_doc("ingest_worker", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
