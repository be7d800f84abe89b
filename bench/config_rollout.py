"""Config rollout (issue 10): N light simulated outlets receive a global change.

The simulated fleet (``govedge_testbed.config_outlets`` in a process of its own, one MQTT
connection per outlet) verifies each signed config with ``verify_config``, "applies" it
in memory and answers on ``up/reported``, as the agent does (docs/config.md).

Two modes:

* default: a real ``fleet-server run`` with a config signing key; the bench registers the
  outlets (profiles with regions, births), ``PUT``s a change of ``global``, then of one
  region, and measures the time until every outlet applied it, until the server says all
  are in sync (``GET /api/v1/config/drift`` empty), and the server's CPU seconds. What it
  assumes of the server is in ``bench/_rollout_server.py`` (``ASSUMED``).
* ``--publisher-only``: no fleet server; the bench itself signs an envelope per outlet and
  publishes them retained (QoS 1), as the server's publisher would, and reads the reports.
  It measures signing, the broker's fan-out and the time to applied, then a region change
  (only that region's outlets get one), then every outlet reconnecting (the retained copy
  comes again and is recognised as already applied: no report).

    python bench/config_rollout.py [--publisher-only] [--quick] [--outlets N] [--write-doc]
                                   [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import TunedMosquitto, machine, pct, raise_nofile, table, update_doc
from _figures import Figure, write_figures
from _rollout_server import GLOBAL_DOC, REGION_DOC, ServerNotReady, run_server_mode
from _rollout_sim import (
    CHANGED_REGION,
    SimFleet,
    broker_pid,
    cpu_s,
    expected_hash,
    outlet_ids,
    region_of,
)
from _rollout_tls import SecureFleet, secure_fleet

from govedge_wire import codec
from govedge_wire.config import SignedConfig, config_message, key_id_for, merge_layers, sign_config
from govedge_wire.topics import Kind, topic_for


class Publisher:
    """Plays the server's publisher: publishes signed configs retained, reads the reports."""

    def __init__(self, port: int, tls: ssl.SSLContext | None) -> None:
        self.applied_at: dict[tuple[str, str], float] = {}  # (outlet, hash) -> first report
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-config-publisher", protocol=mqtt.MQTTv311
        )
        # Measure the broker's fan-out, not paho's default window of 20 in flight.
        self.client.max_inflight_messages_set(1000)
        if tls is not None:
            self.client.tls_set_context(tls)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.connect("127.0.0.1", port, keepalive=600)
        self.client.loop_start()
        self.client.subscribe("govedge/v1/+/up/reported", qos=1)
        if not subscribed.wait(10):
            raise RuntimeError("publisher not subscribed")

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        report = json.loads(msg.payload)
        if report.get("status") == "applied":
            with self._lock:
                self.applied_at.setdefault((report["outlet_id"], report["config_hash"]), now)

    def publish(self, envelopes: list[SignedConfig]) -> None:
        infos = []
        for seq, signed in enumerate(envelopes, 1):
            payload = codec.encode(config_message(signed, session=1, seq=seq))
            infos.append(
                self.client.publish(
                    topic_for(signed.outlet_id, Kind.DESIRED_CONFIG), payload, qos=1, retain=True
                )
            )
        for info in infos:
            info.wait_for_publish(120)

    def reports(self, want: str, ids: list[str]) -> list[float]:
        with self._lock:
            return [self.applied_at[(o, want)] for o in ids if (o, want) in self.applied_at]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _publisher_round(
    pub: Publisher,
    sim: SimFleet,
    key: Ed25519PrivateKey,
    *,
    label: str,
    docs: list[dict[str, Any]],
    version: int,
    ids: list[str],
    others: list[str],
    mosq: int,
    timeout: float,
) -> dict[str, Any]:
    want, config = expected_hash(docs), merge_layers(docs)
    kid = key_id_for(key.public_key())
    c0, s0, p0 = cpu_s(mosq), sim.cpu_s(), cpu_s(os.getpid())
    t0 = time.monotonic()
    signed = [
        sign_config(key, key_id=kid, outlet_id=o, version=version, config=config) for o in ids
    ]
    t_signed = time.monotonic()
    if signed[0].hash != want:
        raise AssertionError("sign_config and the expected hash disagree")
    pub.publish(signed)
    t_pubacked = time.monotonic()
    if not sim.ask("wait_applied", want, ids, timeout):
        raise RuntimeError(f"{label}: not every outlet applied within {timeout} s")
    deadline = time.monotonic() + timeout
    while len(pub.reports(want, ids)) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.05)
    reports = pub.reports(want, ids)
    times = sim.ask("applied", want, ids)
    arrived = [a - t0 for a, _ in times]
    applied = [b - t0 for _, b in times]
    spread = max(a for a, _ in times) - t_signed
    return {
        "label": label,
        "outlets": len(ids),
        "sign_s": t_signed - t0,
        "puback_s": t_pubacked - t0,
        "arrived_max_s": max(arrived),
        "applied_p50_s": pct(applied, 50),
        "applied_p95_s": pct(applied, 95),
        "applied_max_s": max(applied),
        "applied": len(applied),
        "reports": len(reports),
        "reports_max_s": max(reports) - t0 if reports else float("nan"),
        "deliveries_per_s": len(ids) / spread,
        "broker_cpu_s": cpu_s(mosq) - c0,
        "sim_cpu_s": sim.cpu_s() - s0,
        "publisher_cpu_s": cpu_s(os.getpid()) - p0,
        "others_touched": sim.ask("touched", t0, others) if others else 0,
    }


def run_publisher_mode(
    n: int, broker: TunedMosquitto, *, timeout: float, secure: SecureFleet | None
) -> dict[str, Any]:
    key = Ed25519PrivateKey.generate()
    ids = outlet_ids(n)
    keys = {key_id_for(key.public_key()): key.public_key()}
    sim = SimFleet.start(broker.port, ids, keys, secure.outlet_context if secure else None)
    pub = Publisher(broker.port, secure.server_context if secure else None)
    mosq = broker_pid(broker)
    try:
        region_ids = [o for i, o in enumerate(ids) if region_of(i) == CHANGED_REGION]
        others = [o for o in ids if o not in set(region_ids)]
        rounds = [
            _publisher_round(
                pub, sim, key, label="global", docs=[GLOBAL_DOC], version=1,
                ids=ids, others=[], mosq=mosq, timeout=timeout,
            ),
            _publisher_round(
                pub, sim, key, label=f"region:{CHANGED_REGION}", docs=[GLOBAL_DOC, REGION_DOC],
                version=2, ids=region_ids, others=others, mosq=mosq, timeout=timeout,
            ),
        ]  # fmt: skip
        c0, s0 = cpu_s(mosq), sim.cpu_s()
        again = sim.ask("restart")
        again["broker_cpu_s"] = cpu_s(mosq) - c0
        again["sim_cpu_s"] = sim.cpu_s() - s0
        totals = sim.ask("totals")
        return {
            "mode": "publisher",
            "tls": secure is not None,
            "outlets": n,
            "connect_s": sim.connect_s,
            "rounds": rounds,
            "reconnect": again,
            "totals": totals,
        }
    finally:
        pub.close()
        sim.stop()


def report_publisher(res: dict[str, Any]) -> str:
    rows = [
        [
            r["label"], r["outlets"], r["sign_s"], r["puback_s"], r["arrived_max_s"],
            r["applied_p50_s"], r["applied_p95_s"], r["applied_max_s"], r["reports_max_s"],
            r["deliveries_per_s"], r["broker_cpu_s"], r["sim_cpu_s"], r["publisher_cpu_s"],
            r["others_touched"],
        ]
        for r in res["rounds"]
    ]  # fmt: skip
    again = res["reconnect"]
    return "\n".join(
        [
            (
                "TLS, a client certificate per outlet, the generated ACL. "
                if res["tls"]
                else "Plain TCP. "
            )
            + f"{res['outlets']:,} outlets connected (subscribed, birth sent) in "
            f"{res['connect_s']:.1f} s. Times in seconds from the start of signing.",
            "",
            table(
                [
                    "change",
                    "outlets",
                    "signed s",
                    "last PUBACK s",
                    "last arrival s",
                    "applied p50 s",
                    "applied p95 s",
                    "all applied s",
                    "all reports back s",
                    "deliveries/s",
                    "broker CPU s",
                    "simulator CPU s",
                    "publisher CPU s",
                    "other outlets that got a config",
                ],
                rows,
            ),
            "",
            f"Every outlet reconnecting: {int(again['outlets']):,} outlets connected again in "
            f"{again['connect_s']:.1f} s, each had its retained config again "
            f"{again['retained_s']:.1f} s after the disconnect (broker CPU "
            f"{again['broker_cpu_s']:.2f} s, simulator CPU {again['sim_cpu_s']:.1f} s); reports "
            f"sent for it: {int(again['reports_sent'])} (the applied version is recognised).",
            f"Totals: {json.dumps(res['totals'], sort_keys=True)}.",
        ]
    )


def report_server(res: dict[str, Any]) -> str:
    rows = [
        [
            r["scope"], r["outlets"], r["applied"], r["put_s"], r["arrived_max_s"],
            r["applied_max_s"], r["in_sync_s"] if r["in_sync_s"] is not None else "not reached",
            r["ask_s"],
            r["server_cpu_s"], r["broker_cpu_s"], r["sim_cpu_s"], r["others_touched"],
            json.dumps(r["totals"]["refused"]),
        ]
        for r in res["rounds"]
    ]  # fmt: skip
    return "\n".join(
        [
            f"{res['outlets']:,} outlets connected in {res['connect_s']:.1f} s. Times in "
            "seconds from the PUT; CPU from the PUT to the answer saying all are in sync; "
            "refusals counted since the outlets started.",
            "",
            table(
                [
                    "scope changed",
                    "outlets",
                    "applied",
                    "PUT s",
                    "last arrival s",
                    "all applied s",
                    "server: all in sync s",
                    "of which the answering drift GET s",
                    "server CPU s",
                    "broker CPU s",
                    "simulator CPU s",
                    "other outlets that got a config",
                    "refused",
                ],
                rows,
            ),
        ]
    )


def rollout_figures(res: dict[str, Any], *, by: str, scope_key: str) -> list[Figure]:
    """Per changed scope: the time until every outlet applied it, and the CPU of ``by``
    (the server, or the bare publisher) against the broker's for the same deliveries."""
    out = []
    for r in res["rounds"]:
        scope = r[scope_key].replace(":", "_")
        out += [
            Figure(f"{scope}.all_applied", r["applied_max_s"], "s", higher=False),
            Figure(f"{scope}.{by}_cpu", r[f"{by}_cpu_s"], "s",
                   baseline=r["broker_cpu_s"], higher=False),
        ]  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--outlets", type=int)
    ap.add_argument("--quick", action="store_true", help="200 outlets unless --outlets")
    ap.add_argument("--publisher-only", action="store_true", help="no fleet server")
    ap.add_argument(
        "--tls",
        action="store_true",
        help="with --publisher-only: the secure broker, a client certificate per outlet",
    )
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--write-doc", action="store_true")
    ap.add_argument("--json", type=Path, help="write the figures there (bench/_figures.py)")
    args = ap.parse_args()
    n = args.outlets or (200 if args.quick else 1000)
    nofile = raise_nofile()
    load0 = os.getloadavg()
    print(f"{machine()}; RLIMIT_NOFILE {nofile}; load average {load0[0]:.1f}")
    if args.tls and not args.publisher_only:
        sys.exit("config_rollout: --tls needs --publisher-only (server mode runs plain TCP)")
    work = Path(tempfile.mkdtemp(prefix="bench-config-"))
    extra = ["max_connections -1", "max_queued_messages 100000", "max_inflight_messages 0"]
    secure = secure_fleet(work, outlet_ids(n), extra) if args.tls else None
    broker = secure.broker if secure else TunedMosquitto(extra, workdir=work / "broker")
    broker.start()
    try:
        if args.publisher_only:
            res = run_publisher_mode(n, broker, timeout=args.timeout, secure=secure)
            text = report_publisher(res)
            write_figures(args.json, rollout_figures(res, by="publisher", scope_key="label"))
        else:
            res = run_server_mode(n, work, broker, timeout=args.timeout)
            text = report_server(res)
            write_figures(args.json, rollout_figures(res, by="server", scope_key="scope"))
    except ServerNotReady as exc:
        sys.exit(f"config_rollout: {exc}")
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    load1 = os.getloadavg()
    loads = f"Load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end (1 min)."
    print()
    print(text)
    print(loads)
    if args.write_doc:
        mode = ("publisher-tls" if args.tls else "publisher") if args.publisher_only else "server"
        quick = "-quick" if args.quick else ""
        update_doc(
            f"config_rollout-{mode}{quick}",
            f"### Results ({mode} mode, {n:,} outlets, {time.strftime('%Y-%m-%d')}; "
            f"{machine()})\n\n{loads}\n\n{text}",
        )


if __name__ == "__main__":
    main()
