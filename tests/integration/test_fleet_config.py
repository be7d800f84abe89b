"""Signed fleet configs applied live by a real simulated agent on a real Mosquitto.

The test signs configs with its own Ed25519 key (the agent trusts it through
``config_keys_file``), publishes them retained on the outlet's ``down/config`` like the
fleet server, and checks what a technician would: the ``reported`` answers, the birth,
the telemetry counters and the queue windows the clerks see through the local API.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from edge_agent.simulate import LED_DEVICE_ID, PAD_DEVICE_ID, keypad_device_id
from govedge_testbed import Mosquitto
from govedge_wire import MAX_PAYLOAD_BYTES, Birth, ConfigReport, Event, Kind, Telemetry, topic_for
from tests.agent.harness import Observer, poll
from tests.integration.fleet_config_harness import FleetAgent, Signer, publish_config, reports


def _windows(*spec: tuple[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "window": name,
            "business_types": [code],
            "led": LED_DEVICE_ID,
            "keypad": keypad_device_id(),
        }
        for name, code in spec
    ]


def _config(*spec: tuple[str, str], interval: float = 0.5) -> dict[str, Any]:
    return {"queue": {"windows": _windows(*spec)}, "telemetry": {"interval_s": interval}}


class Outlet:
    def __init__(self, broker: Mosquitto, outlet_id: str, tmp_path: Path) -> None:
        self.broker = broker
        self.outlet_id = outlet_id
        self.data_dir = tmp_path / "data"
        self.signer = Signer(outlet_id)
        self.keys_file = self.signer.keys_file(tmp_path / "config-keys.json")
        self.observer = Observer(port=broker.port, outlet_id=outlet_id)
        self.agent = self.start()

    def start(self) -> FleetAgent:
        self.agent = FleetAgent(self.broker, self.outlet_id, self.data_dir, self.keys_file)
        return self.agent

    def offer(self, data: bytes) -> ConfigReport:
        """Publish a config and wait for the agent's report on it."""
        before = len(reports(self.observer))
        publish_config(self.observer, self.outlet_id, data)
        poll(lambda: len(reports(self.observer)) > before, timeout=20, what="config report")
        return reports(self.observer)[before]

    def clear_retained(self) -> None:
        self.observer.publish_raw(topic_for(self.outlet_id, Kind.DESIRED_CONFIG), b"", retain=True)


@pytest.fixture
def outlet(broker: Mosquitto, outlet_id: str, tmp_path: Path) -> Iterator[Outlet]:
    site = Outlet(broker, outlet_id, tmp_path)
    try:
        yield site
    finally:
        site.clear_retained()
        code = site.agent.close()
        site.observer.close()
        assert code in (0, -9), site.agent.log()


def test_applied_then_every_bad_config_refused_keeping_the_last_good(outlet: Outlet) -> None:
    signer = outlet.signer
    good = signer.sign(1, _config(("1", "general"), ("7", "social")))
    report = outlet.offer(good)
    assert report.status == "applied", report
    assert report.config_version == 1
    assert report.config_key_ids == [signer.key_id]
    applied_hash = report.config_hash
    assert outlet.agent.windows() == {"1": ["general"], "7": ["social"]}

    stranger = Signer(outlet.outlet_id)
    stranger.key_id = signer.key_id  # same id, another key: the signature cannot verify
    # An extra field of the outer message (ignored) makes the payload too large for the
    # agent, yet small enough for the broker's packet limit to let it through.
    base = signer.sign(2, _config(("1", "general")))
    filler = MAX_PAYLOAD_BYTES + 1000 - len(base) - len(b'"pad":"",')
    oversize = base.replace(b'"body"', b'"pad":"' + b"x" * filler + b'","body"', 1)
    cases = {
        "bad_signature": stranger.sign(2, _config(("1", "general"))),
        "unknown_key": Signer(outlet.outlet_id).sign(2, _config(("1", "general"))),
        "hash_mismatch": signer.sign_tampered(
            2, _config(("1", "general")), _config(("1", "general"), ("2", "tax"))
        ),
        "schema": signer.sign_unchecked(2, {"queue": {"colour": "red"}}),
        "replayed": signer.sign(1, _config(("9", "general"))),
        "other_outlet": signer.sign(2, _config(("1", "general")), outlet_id="someone-else"),
        "garbage": b"\xff not a config",
        "oversize": oversize,
        "invalid_here": signer.sign(
            2,
            {
                "queue": {
                    "windows": [
                        {"window": "1", "business_types": ["general"], "pad": "no-such-pad"}
                    ]
                }
            },
        ),
    }
    for reason, data in cases.items():
        report = outlet.offer(data)
        assert (report.status, report.reason) == ("refused", reason), report
        assert report.config_version == 1
        assert report.config_hash == applied_hash
        assert outlet.agent.windows() == {"1": ["general"], "7": ["social"]}, reason
    assert "no-such-pad" in (reports(outlet.observer)[-1].detail or "")

    telemetry = outlet.observer.wait_for(
        Telemetry,
        lambda t: all(t.metrics.get(f"config_refused_{r}") == 1 for r in cases),
        timeout=10,
        what="refusals counted in telemetry",
    )
    assert telemetry.metrics["config_applied"] == 1

    # The birth (asked for again) carries what runs and the keys held.
    births = len(outlet.observer.messages(Birth))
    outlet.observer.send_command("rebirth", cmd_id="c-rebirth")
    poll(lambda: len(outlet.observer.messages(Birth)) > births, timeout=10, what="rebirth")
    birth = outlet.observer.messages(Birth)[-1]
    assert (birth.config_version, birth.config_hash) == (1, applied_hash)
    assert birth.config_key_ids == [signer.key_id]


def test_windows_change_while_tickets_wait_and_survive_a_restart(outlet: Outlet) -> None:
    signer = outlet.signer
    assert outlet.offer(signer.sign(1, _config(("1", "general"), ("2", "social")))).status == (
        "applied"
    )
    api = outlet.agent.api
    for code in ["general"] * 3 + ["social"] * 2:
        api.post("/v1/tickets", json={"business_type": code, "print": False}).raise_for_status()
    api.post("/v1/windows/2/call").raise_for_status()  # one social ticket is at window 2

    # Window 2 goes (its current ticket waits again), window 3 comes for the same queue.
    report = outlet.offer(signer.sign(2, _config(("1", "general"), ("3", "social"))))
    assert report.status == "applied", report
    queue = outlet.agent.queue()
    waiting = {t["code"]: t["waiting"] for t in queue["business_types"]}
    assert waiting == {"general": 3, "social": 2, "realestate": 0, "tax": 0}
    assert {w["window"]: w["waiting"] for w in queue["windows"]} == {"1": 3, "3": 2}

    # A business type with tickets waiting cannot be taken away.
    only_general = _config(("1", "general"))
    only_general["queue"]["business_types"] = [{"code": "general", "prefix": "A", "name": "综合"}]
    refused = outlet.offer(signer.sign(3, only_general))
    assert (refused.status, refused.reason) == ("refused", "invalid_here")
    assert "social" in (refused.detail or "")
    # The server puts the applied config back as the retained one.
    v2 = signer.sign(2, _config(("1", "general"), ("3", "social")))
    publish_config(outlet.observer, outlet.outlet_id, v2)

    # Restart: the last good config is in force before the agent connects (the first
    # birth says so); the retained copy of it arrives again and is recognised.
    assert outlet.agent.close() == 0, outlet.agent.log()[-4000:]
    count = len(reports(outlet.observer))
    births = len(outlet.observer.messages(Birth))
    agent = outlet.start()
    assert agent.windows() == {"1": ["general"], "3": ["social"]}
    poll(lambda: len(outlet.observer.messages(Birth)) > births, timeout=20, what="birth")
    birth = outlet.observer.messages(Birth)[births]
    assert (birth.config_version, birth.config_hash) == (2, report.config_hash)
    telemetry = outlet.observer.wait_for(
        Telemetry, lambda t: t.session == birth.session and t.seq > birth.seq + 2, timeout=10
    )
    assert telemetry.metrics["config_refused_replayed"] == 0
    assert len(reports(outlet.observer)) == count
    assert agent.windows() == {"1": ["general"], "3": ["social"]}


def test_a_driver_override_restarts_only_that_driver(outlet: Outlet) -> None:
    observer = outlet.observer
    birth = observer.wait_for(
        Birth,
        lambda b: (
            len(b.devices) == outlet.agent.simulated and all(d.state == "ready" for d in b.devices)
        ),
        timeout=20,
        what="every device ready",
    )
    assert len(birth.devices) > 2
    # Ready events queued before that birth are out once a later telemetry sample is.
    observer.wait_for(
        Telemetry, lambda t: t.session == birth.session and t.seq > birth.seq, timeout=10
    )
    before = len(observer.messages(Event))
    config = _config(("1", "general"))
    config["devices"] = {"haochaping-pad": {"retries": 3}}
    assert outlet.offer(outlet.signer.sign(1, config)).status == "applied"
    _wait_ready_after(observer, before)
    again = {e.device_id for e in observer.messages(Event)[before:] if e.name == "device.ready"}
    assert again == {PAD_DEVICE_ID}

    # The region's evaluation profile reaches every evaluation pad: again only the pad.
    before = len(observer.messages(Event))
    config["evaluation"] = {"level_coding": "zhejiang"}
    assert outlet.offer(outlet.signer.sign(2, config)).status == "applied"
    _wait_ready_after(observer, before)
    again = {e.device_id for e in observer.messages(Event)[before:] if e.name == "device.ready"}
    assert again == {PAD_DEVICE_ID}

    bad = _config(("1", "general"))
    bad["devices"] = {"haochaping-pad": {"retries": 99}}
    report = outlet.offer(outlet.signer.sign(3, bad))
    assert (report.status, report.reason) == ("refused", "invalid_here")
    assert "retries" in (report.detail or "")


def _wait_ready_after(observer: Observer, before: int) -> None:
    poll(
        lambda: any(
            e.name == "device.ready" and e.device_id == PAD_DEVICE_ID
            for e in observer.messages(Event)[before:]
        ),
        timeout=20,
        what="the pad ready again",
    )


def test_sigkill_mid_apply_leaves_the_old_or_the_new_config(outlet: Outlet) -> None:
    signer = outlet.signer
    shapes = {
        "a": _config(("1", "general"), ("2", "social"), interval=0.5),
        "b": _config(("5", "tax"), ("6", "realestate"), interval=0.75),
    }
    hashes: dict[str, str] = {}
    seen: set[str] = set()
    rng = random.Random(10)
    for version in range(1, 7):
        shape = "a" if version % 2 else "b"
        publish_config(outlet.observer, outlet.outlet_id, signer.sign(version, shapes[shape]))
        time.sleep(rng.uniform(0.0, 0.25))  # the kill lands anywhere around the apply
        outlet.agent.kill()
        outlet.clear_retained()  # after restart, only the last good file speaks
        births = len(outlet.observer.messages(Birth))
        agent = outlet.start()
        poll(lambda n=births: len(outlet.observer.messages(Birth)) > n, timeout=20, what="birth")
        birth = outlet.observer.messages(Birth)[births]
        windows = agent.windows()
        if birth.config_hash is None:  # killed before the first apply: the simulated outlet's
            assert windows == {"1": ["general", "social"], "2": ["realestate", "tax"]}
            continue
        wanted = {
            name: {w["window"]: w["business_types"] for w in shape["queue"]["windows"]}
            for name, shape in shapes.items()
        }
        matching = [name for name, shape_windows in wanted.items() if shape_windows == windows]
        assert len(matching) == 1, (version, windows)
        expected = matching[0]
        assert birth.telemetry_interval_s == shapes[expected]["telemetry"]["interval_s"]
        assert hashes.setdefault(expected, birth.config_hash) == birth.config_hash
        seen.add(expected)
    assert seen, "no config was ever applied before a kill"


def test_a_part_failing_rolls_every_part_back(outlet: Outlet) -> None:
    before = outlet.agent.windows()
    # The last good file cannot replace a directory: the very last part fails.
    blocker = outlet.data_dir / "config" / "last-good.json"
    blocker.mkdir(parents=True)
    (blocker / "keep").write_text("")
    report = outlet.offer(outlet.signer.sign(1, _config(("4", "tax"))))
    assert (report.status, report.reason) == ("refused", "apply_failed"), report
    assert report.config_version is None
    assert outlet.agent.windows() == before  # the queue windows were switched back

    (blocker / "keep").unlink()
    blocker.rmdir()
    report = outlet.offer(outlet.signer.sign(2, _config(("4", "tax"))))
    assert report.status == "applied", report
    assert outlet.agent.windows() == {"4": ["tax"]}


def test_the_days_bookings_pushed_by_the_fleet_check_in_at_the_kiosk(outlet: Outlet) -> None:
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()  # the agent's zone
    config = _config(("1", "general"), ("2", "social"))
    config["queue"]["appointments"] = [
        {"reference": "YY-FLEET-1", "day": today, "business_type": "social", "priority": 2},
        {"reference": "YY-FLEET-2", "day": today, "business_type": "general"},
    ]
    report = outlet.offer(outlet.signer.sign(1, config))
    assert report.status == "applied", report
    api = outlet.agent.api
    assert outlet.agent.queue()["appointments"] == {"booked": 2, "checked_in": 0, "expired": 0}
    api.post("/v1/tickets", json={"business_type": "social", "print": False}).raise_for_status()

    checked_in = api.post("/v1/appointments/check-in", json={"reference": "yy-fleet-1",
                                                             "print": False})  # fmt: skip
    assert checked_in.status_code == 201, checked_in.text
    assert (checked_in.json()["appointment"], checked_in.json()["priority"]) == ("YY-FLEET-1", 2)
    called = api.post("/v1/windows/2/call").raise_for_status().json()
    assert called["ticket"]["number"] == checked_in.json()["number"]  # before the walk-in

    # The same config again (a new version): the checked-in booking keeps its state.
    again = outlet.offer(outlet.signer.sign(2, config))
    assert again.status == "applied", again
    used = api.post("/v1/appointments/check-in", json={"reference": "YY-FLEET-1"})
    assert used.json()["error"] == "appointment_used"

    # A booking of a business type this outlet does not have refuses the whole config.
    config["queue"]["appointments"].append(
        {"reference": "YY-FLEET-3", "day": today, "business_type": "passports"}
    )
    refused = outlet.offer(outlet.signer.sign(3, config))
    assert (refused.status, refused.reason) == ("refused", "invalid_here")
    assert "passports" in (refused.detail or "")
    missing = api.post("/v1/appointments/check-in", json={"reference": "YY-FLEET-3"})
    assert missing.json()["error"] == "appointment_not_found"
    assert outlet.agent.queue()["appointments"] == {"booked": 2, "checked_in": 1, "expired": 0}

    # A restart (a reinstalled agent's first start, a power cut): the bookings are back
    # from the last good config before it connects, the used one still used.
    assert outlet.agent.close() == 0, outlet.agent.log()[-4000:]
    api = outlet.start().api
    assert outlet.agent.queue()["appointments"] == {"booked": 2, "checked_in": 1, "expired": 0}
    used = api.post("/v1/appointments/check-in", json={"reference": "YY-FLEET-1"})
    assert used.json()["error"] == "appointment_used"
    second = api.post("/v1/appointments/check-in", json={"reference": "YY-FLEET-2",
                                                         "print": False})  # fmt: skip
    assert second.status_code == 201, second.text
    assert second.json()["appointment"] == "YY-FLEET-2"
