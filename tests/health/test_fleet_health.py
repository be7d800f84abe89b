"""Fleet health end to end: one real server process, a real Mosquitto, fake agents on paho,
a real local webhook receiver. Device state, events, layered presence, alerts, rate
limits, /metrics, GeoJSON and ``fleetctl alerts``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from govedge_testbed import Mosquitto
from govedge_wire import Birth, Event, Telemetry
from tests.health.receiver import WebhookReceiver
from tests.server.helpers import FakeAgent, FleetServer, poll

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def hook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def server(
    broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory, hook: WebhookReceiver
) -> Iterator[FleetServer]:
    workdir = tmp_path_factory.mktemp("health")
    fleet = FleetServer(
        mqtt_url=broker.url,
        database_url=f"sqlite:///{workdir / 'fleet.db'}",
        workdir=workdir,
        GOVEDGE_API_AUTH="off",
        GOVEDGE_PKI_DIR=str(workdir / "pki"),
        GOVEDGE_ALERT_EVAL_INTERVAL_S="0.2",
        GOVEDGE_HEALTH_HISTORY_INTERVAL_S="0.05",
        GOVEDGE_ALERT_WEBHOOKS=json.dumps([hook.url]),
        GOVEDGE_ALERT_WEBHOOK_BACKOFF_S="0.1",
        GOVEDGE_INGEST_OUTLET_RATE_PER_S="5",
        GOVEDGE_INGEST_OUTLET_BURST="30",
    )
    fleet.start()
    yield fleet
    assert fleet.stop() == 0, fleet.stderr()


@pytest.fixture
def agent(broker: Mosquitto, outlet_id: str) -> Iterator[FakeAgent]:
    fake = FakeAgent(broker.url, outlet_id, session=3)
    yield fake
    fake.close()


_DEVICES = [
    {"device_id": "reader-1", "kind": "id_card_reader", "health": {"firmware": "2.1"}},
    {"device_id": "printer-1", "kind": "escpos_printer", "health": {"paper": "ok"}},
]


def _birth(agent: FakeAgent) -> None:
    agent.send(
        Birth(
            outlet_id=agent.outlet_id, session=agent.session, seq=agent._next(),
            agent_version="0.1.0-test", hostname="pc", os="Debian 12", devices=_DEVICES,
            config_version=3, telemetry_interval_s=5.0, keepalive_s=30,
        )
    )  # fmt: skip


def _override(server: FleetServer, outlet_id: str, rule: str, **params: Any) -> None:
    body = {"scope": "outlet", "scope_value": outlet_id, "rule": rule, "params": params}
    server.http.put("/api/v1/alert-rules", json=body).raise_for_status()


def _health(server: FleetServer, outlet_id: str) -> dict[str, Any]:
    result: dict[str, Any] = server.get(f"/api/v1/outlets/{outlet_id}/health")
    return result


def _open(server: FleetServer, outlet_id: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = server.get(f"/api/v1/alerts?outlet_id={outlet_id}")
    return result


def _device(page: dict[str, Any], device_id: str) -> dict[str, Any]:
    return next(d for d in page["devices"] if d["device_id"] == device_id)


def test_device_state_events_and_one_alert_per_dead_outlet(
    server: FleetServer, agent: FakeAgent, hook: WebhookReceiver
) -> None:
    outlet = agent.outlet_id
    _override(server, outlet, "outlet_offline", after_s=1.5)
    _birth(agent)
    server.wait_state(outlet, "online")
    agent.send(
        Telemetry(
            outlet_id=outlet, session=3, seq=agent._next(),
            metrics={"cpu_percent": 5.0, "disk_used_percent": 40.0},
            devices={"reader-1": {"reads_ok": 90, "reads_failed": 3, "connected": True}},
        )
    )  # fmt: skip
    agent.send(
        Event(outlet_id=outlet, session=3, seq=agent._next(), name="paper.out",
              severity="warning", device_id="printer-1", data={"job": 7})
    )  # fmt: skip
    page = poll(
        lambda: (
            (p := _health(server, outlet))
            and p["events"]
            and _device(p, "reader-1")["reads_ok"] == 90
            and p
        ),
        what="device health and event",
    )
    reader = _device(page, "reader-1")
    assert reader["firmware"] == "2.1"
    assert reader["reads_failed"] == 3
    assert reader["state"] == "ready"
    assert page["events"][0]["name"] == "paper.out"
    assert page["clock_skew_s"] is not None
    # Paper out opens one critical alert for the printer; the webhook hears of it.
    paper = poll(lambda: [a for a in _open(server, outlet) if a["rule"] == "printer_paper"])
    assert paper[0]["severity"] == "critical"
    assert paper[0]["device_id"] == "printer-1"
    poll(lambda: ("opened", "printer_paper") in hook.events(outlet), what="webhook opened")

    # A short flap (death, then a birth within the damping time) opens nothing.
    agent.death()
    server.wait_state(outlet, "offline")
    agent.session += 1
    agent.seq = 0
    _birth(agent)
    server.wait_state(outlet, "online")
    # The agent dies for good: devices become stale, the device alert resolves, and one
    # outlet alert opens after the damping time — not one per device.
    agent.death()
    server.wait_state(outlet, "offline")
    page = _health(server, outlet)
    assert {d["state"] for d in page["devices"]} == {"stale"}
    alerts = poll(lambda: (a := _open(server, outlet)) and a[0]["rule"] == "outlet_offline" and a,
                  timeout=20, what="outlet_offline")  # fmt: skip
    assert [a["rule"] for a in alerts] == ["outlet_offline"]
    history = server.get(f"/api/v1/alerts?state=all&outlet_id={outlet}")
    assert sum(a["rule"] == "outlet_offline" for a in history) == 1  # the flap opened none
    # Acknowledge and silence through fleetctl; then the outlet comes back: resolved.
    alert_id = alerts[0]["id"]
    listed = _fleetctl(server, "alerts", "list", "--json")
    assert alert_id in [a["id"] for a in json.loads(listed)]
    assert "acknowledged" in _fleetctl(server, "alerts", "ack", str(alert_id))
    assert server.get(f"/api/v1/alerts/{alert_id}")["acked_by"] == "dev"
    assert "silenced until" in _fleetctl(
        server, "alerts", "silence", str(alert_id), "--minutes", "5", "--reason", "power cut"
    )
    agent.session += 1
    agent.seq = 0
    _birth(agent)
    poll(lambda: server.get(f"/api/v1/alerts/{alert_id}")["state"] == "resolved", what="resolve")
    # Silenced: the resolution sent no webhook; the opening did.
    poll(lambda: ("opened", "outlet_offline") in hook.events(outlet), what="webhook")
    assert ("resolved", "outlet_offline") not in hook.events(outlet)


def _fleetctl(server: FleetServer, *args: str) -> str:
    result = subprocess.run(
        [str(BIN / "fleetctl"), "--server", server.url, *args],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_webhook_retries_until_the_receiver_accepts(
    server: FleetServer, agent: FakeAgent, hook: WebhookReceiver
) -> None:
    outlet = agent.outlet_id
    hook.fail_next = 2
    agent.birth()
    server.wait_state(outlet, "online")
    agent.telemetry(disk_used_percent=97.5)
    poll(lambda: ("opened", "disk_almost_full") in hook.events(outlet), what="webhook retried")
    assert hook.attempts >= 3
    agent.telemetry(disk_used_percent=50.0)
    poll(lambda: ("resolved", "disk_almost_full") in hook.events(outlet), what="resolved hook")


def test_clock_skew_and_outbox_backlog_rules(server: FleetServer, agent: FakeAgent) -> None:
    outlet = agent.outlet_id
    agent.birth()
    server.wait_state(outlet, "online")
    agent.send(
        Telemetry(outlet_id=outlet, session=3, seq=agent._next(), ts=1_600_000_000_000,
                  metrics={"outbox_oldest_age_s": 7200.0})
    )  # fmt: skip
    rules = poll(
        lambda: (
            {a["rule"] for a in _open(server, outlet)} >= {"clock_skew", "outbox_backlog_age"}
            and {a["rule"] for a in _open(server, outlet)}
        ),
        what="skew and backlog alerts",
    )
    assert "disk_almost_full" not in rules


def test_rate_limit_holds_back_one_flooding_outlet_only(
    server: FleetServer, broker: Mosquitto, agent: FakeAgent
) -> None:
    noisy = agent
    quiet = FakeAgent(broker.url, f"{agent.outlet_id}-quiet", session=1)
    try:
        noisy.birth()
        quiet.birth()
        server.wait_state(noisy.outlet_id, "online")
        server.wait_state(quiet.outlet_id, "online")
        for _ in range(200):
            noisy.telemetry(cpu_percent=1.0)
        quiet.telemetry(cpu_percent=2.0)

        def refused_now() -> dict[str, int]:
            limits = server.get("/api/v1/ingest/rate-limits")
            return {o["outlet_id"]: o["refused"] for o in limits["outlets"]}

        # The 200 messages may still be arriving: wait until at least half are refused.
        refused = poll(
            lambda: (r := refused_now()) and r.get(noisy.outlet_id, 0) >= 100 and r,
            what="the flooding outlet's refused count reaching 100",
        )
        assert quiet.outlet_id not in refused

        def quiet_heard() -> bool:
            row = server.outlet(quiet.outlet_id) or {}
            return (row.get("last_metrics") or {}).get("cpu_percent") == 2.0

        poll(quiet_heard, what="the quiet outlet's telemetry")
        assert server.stats()["rejected"]["rate_limited"] >= 100
        metrics = server.http.get("/metrics").text
        assert "govedge_ingest_rate_limited_total" in metrics
        assert 'govedge_ingest_rejected_total{reason="rate_limited"}' in metrics
        assert "govedge_ingest_queue_depth" in metrics
        assert 'govedge_db_latency_seconds_bucket{le="0.001",op="health_flush"}' in metrics
    finally:
        quiet.close()


def test_geojson_and_scoped_overrides(server: FleetServer, agent: FakeAgent) -> None:
    outlet = agent.outlet_id
    profile = {
        "outlet_id": outlet, "name": "城关镇便民服务中心", "kind": "township_centre",
        "region_code": "410402", "latitude": 33.74, "longitude": 113.30,
        "opening_hours": {"mon": ["08:30-12:00"]}, "service_items": ["社保卡申领"],
    }  # fmt: skip
    server.http.put("/api/v1/outlet-profiles", json=[profile]).raise_for_status()
    agent.birth()
    server.wait_state(outlet, "online")
    feature = next(
        f for f in server.get("/api/v1/outlets.geojson")["features"] if f["id"] == outlet
    )
    assert feature["geometry"] == {"type": "Point", "coordinates": [113.30, 33.74]}
    assert feature["properties"]["state"] == "online"
    assert feature["properties"]["service_items"] == ["社保卡申领"]
    # global → region prefix → kind → outlet, later wins.
    for scope, value, after in (("region", "41", 100), ("kind", "township_centre", 200)):
        body = {"scope": scope, "scope_value": value, "rule": "outlet_offline",
                "params": {"after_s": after}}  # fmt: skip
        server.http.put("/api/v1/alert-rules", json=body).raise_for_status()
    effective = server.get(f"/api/v1/alert-rules/effective/{outlet}")
    assert effective["outlet_offline"]["after_s"] == 200
    _override(server, outlet, "outlet_offline", after_s=300)
    assert server.get(f"/api/v1/alert-rules/effective/{outlet}")["outlet_offline"]["after_s"] == 300
    bad = server.http.put(
        "/api/v1/alert-rules",
        json={"scope": "global", "rule": "outlet_offline", "params": {"nope": 1}},
    )
    assert bad.status_code == 422
