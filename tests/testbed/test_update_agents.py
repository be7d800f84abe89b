"""The update-agent simulator against a real Mosquitto; the test plays the server.

A paho observer publishes ``UpdateOffer`` messages on outlets' ``down/update`` and
records what comes back on ``up/updstatus`` and ``up/birth``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from govedge_testbed import Mosquitto
from govedge_testbed.update_agents import Outcome, UpdateAgents, final_states
from govedge_wire import codec
from govedge_wire.messages import UpdateOffer, now_ms
from govedge_wire.topics import Kind, topic_for


class FakeServer:
    """Publishes offers and records the agents' births and update statuses."""

    def __init__(self, broker: Mosquitto) -> None:
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.client.subscribe([("govedge/v1/+/up/birth", 1), ("govedge/v1/+/up/updstatus", 1)])
        assert self._subscribed.wait(10), "observer not subscribed"

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received.append(json.loads(msg.payload))

    def offer(
        self,
        outlet: str,
        version: str,
        *,
        campaign_id: int = 1,
        not_before_ms: int = 0,
        window_s: float = 3600,
    ) -> None:
        now = now_ms()
        message = UpdateOffer(
            outlet_id=outlet,
            session=1,
            seq=1,
            campaign_id=campaign_id,
            version=version,
            manifest={"version": version},
            artifact_path=f"/api/v1/releases/{version}/artifact",
            not_before_ts=now + not_before_ms,
            window_end_ts=int(now + window_s * 1000),
        )
        self.client.publish(topic_for(outlet, Kind.UPDATE_OFFER), codec.encode(message), qos=1)

    def messages(self, kind: str, outlet: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.received if m["kind"] == kind and m["outlet_id"] == outlet]

    def wait_for(self, outlet: str, state: str, timeout: float = 30) -> list[dict[str, Any]]:
        """Poll until ``outlet`` sent an update status ``state``; its statuses so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            statuses = self.messages("updstatus", outlet)
            if any(s["state"] == state for s in statuses):
                return statuses
            time.sleep(0.05)
        raise AssertionError(f"{outlet} never sent {state}: {self.messages('updstatus', outlet)}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def server(broker: Mosquitto) -> Iterator[FakeServer]:
    fake = FakeServer(broker)
    yield fake
    fake.close()


def _ids(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"ua-{tag}-{i:04d}" for i in range(n)]


def test_an_offer_is_installed_step_by_step_and_proven_by_a_new_birth(
    broker: Mosquitto, server: FakeServer
) -> None:
    ids = _ids(3)
    agents = UpdateAgents("127.0.0.1", broker.port, ids, version="1.0.0")
    agents.start(timeout=30)
    try:
        server.offer(ids[0], "1.1.0", campaign_id=7)
        statuses = server.wait_for(ids[0], "healthy")
        assert [s["state"] for s in statuses] == [
            "downloading",
            "verifying",
            "installing",
            "restarting",
            "healthy",
        ]
        assert statuses[-1]["running_version"] == "1.1.0"
        assert statuses[0]["running_version"] == "1.0.0"
        assert all(s["campaign_id"] == 7 and s["version"] == "1.1.0" for s in statuses)
        births = server.messages("birth", ids[0])
        assert [b["agent_version"] for b in births] == ["1.0.0", "1.1.0"]
        logs = agents.snapshot()
        assert logs[ids[0]].version == "1.1.0"
        assert final_states(logs, 7) == {ids[0]: "healthy"}
        # The other agents were never offered anything, and sent only their first birth.
        assert not logs[ids[1]].offered
        assert not logs[ids[2]].offered
        assert [b["agent_version"] for b in server.messages("birth", ids[1])] == ["1.0.0"]
    finally:
        agents.stop()


def test_a_bad_release_rolls_back_and_a_repeat_offer_gets_the_same_answer(
    broker: Mosquitto, server: FakeServer
) -> None:
    ids = _ids(2)
    agents = UpdateAgents(
        "127.0.0.1",
        broker.port,
        ids,
        outcomes={"1.5.0": Outcome("rolled_back", "not_healthy")},
    )
    agents.start(timeout=30)
    try:
        server.offer(ids[0], "1.5.0", campaign_id=2)
        statuses = server.wait_for(ids[0], "rolled_back")
        assert statuses[-1]["reason"] == "not_healthy"
        assert statuses[-1]["running_version"] == "1.0.0"
        assert [b["agent_version"] for b in server.messages("birth", ids[0])] == [
            "1.0.0",
            "1.0.0",
        ]
        # The repeated offer (as on each birth while due) is answered, not reinstalled.
        server.offer(ids[0], "1.5.0", campaign_id=2)
        deadline = time.monotonic() + 30
        while len(server.messages("updstatus", ids[0])) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        again = server.messages("updstatus", ids[0])
        assert [s["state"] for s in again[5:]] == ["rolled_back"]
        # A fixed release is then installed.
        agents.set_outcome("1.5.1", Outcome())
        server.offer(ids[0], "1.5.1", campaign_id=2)
        server.wait_for(ids[0], "healthy")
        assert agents.snapshot()[ids[0]].version == "1.5.1"
    finally:
        agents.stop()


def test_a_failed_install_reports_its_reason_without_restarting(
    broker: Mosquitto, server: FakeServer
) -> None:
    ids = _ids(1)
    agents = UpdateAgents(
        "127.0.0.1", broker.port, ids, outcomes={"2.0.0": Outcome("failed", "disk_full")}
    )
    agents.start(timeout=30)
    try:
        server.offer(ids[0], "2.0.0")
        statuses = server.wait_for(ids[0], "failed")
        assert [s["state"] for s in statuses] == ["downloading", "verifying", "failed"]
        assert statuses[-1]["reason"] == "disk_full"
        assert len(server.messages("birth", ids[0])) == 1
    finally:
        agents.stop()


def test_an_offer_after_its_window_is_skipped_and_not_before_is_honoured(
    broker: Mosquitto, server: FakeServer
) -> None:
    ids = _ids(2)
    agents = UpdateAgents("127.0.0.1", broker.port, ids)
    agents.start(timeout=30)
    try:
        server.offer(ids[0], "1.1.0", window_s=-1)
        statuses = server.wait_for(ids[0], "skipped")
        assert [(s["state"], s["reason"]) for s in statuses] == [("skipped", "window_missed")]
        assert agents.snapshot()[ids[0]].version == "1.0.0"

        offered_at = now_ms()
        server.offer(ids[1], "1.1.0", not_before_ms=1500)
        statuses = server.wait_for(ids[1], "healthy")
        assert statuses[0]["state"] == "downloading"
        assert statuses[0]["ts"] >= offered_at + 1500  # no download before not_before_ts
    finally:
        agents.stop()


def test_a_thousand_agents_in_one_process_and_only_the_offered_ones_move(
    broker: Mosquitto, server: FakeServer
) -> None:
    ids = _ids(1000)
    agents = UpdateAgents("127.0.0.1", broker.port, ids)
    agents.start(timeout=120)
    try:
        first_wave = ids[:10]
        for outlet in first_wave:
            server.offer(outlet, "1.1.0", campaign_id=3)
        logs = agents.wait(
            lambda logs: all(logs[o].version == "1.1.0" for o in first_wave), timeout=60
        )
        assert final_states(logs, 3) == dict.fromkeys(first_wave, "healthy")
        assert [o for o, log in logs.items() if log.offered] == first_wave
        assert all(log.births_sent == 1 for o, log in logs.items() if o not in first_wave)
    finally:
        agents.stop()
