"""The ingest benchmarks' simulated outlets (bench/_fleet_sim.py) on real Mosquittos.

Their figures are only worth what the simulator sends: every outlet's birth and
telemetry must be a message the server's own codec accepts, reach the broker the
server listens on (through the edge brokers' bridges when there are edges), and after
a broker restart every outlet must come back with a new session and birth only once
it sees the server online. Nothing here measures speed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

import govedge_wire as wire
from govedge_testbed import ServiceUnavailable
from tests.conftest import missing

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))
from _brokers import Brokers  # noqa: E402
from _fleet_sim import Fleet  # noqa: E402

OUTLETS = 120


class Uplink:
    """Every uplink message the core broker carries, decoded by the server's codec."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.births: dict[str, list[wire.Birth]] = {}
        self.telemetry: dict[str, list[wire.Telemetry]] = {}
        self.refused: list[str] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="uplink-watch")
        subscribed = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe("govedge/v1/+/up/+", qos=1)
        assert subscribed.wait(10)

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            decoded = wire.decode(message.topic, bytes(message.payload))
        except wire.WireError as exc:
            with self.lock:
                self.refused.append(f"{message.topic}: {exc}")
            return
        with self.lock:
            if isinstance(decoded, wire.Birth):
                self.births.setdefault(decoded.outlet_id, []).append(decoded)
            elif isinstance(decoded, wire.Telemetry):
                self.telemetry.setdefault(decoded.outlet_id, []).append(decoded)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_for(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout} s")


@pytest.fixture(params=["one broker", "edges bridged"])
def brokers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Brokers]:
    # Three edges of 50 outlets stand for the 50,000-outlet run's three of ~19,500.
    tier = Brokers(tmp_path, OUTLETS, 50 if request.param == "edges bridged" else None)
    try:
        tier.start()
    except ServiceUnavailable as exc:
        tier.stop()
        missing(f"service not available: {exc}")
    yield tier
    tier.stop()


def test_every_outlet_births_sends_valid_telemetry_and_births_again_after_a_restart(
    brokers: Brokers,
) -> None:
    uplink = Uplink(brokers.port)
    fleet = Fleet(brokers.outlet_ports, OUTLETS, 2)
    try:
        assert fleet.wait_ready(60)
        assert fleet.counts() == (0, OUTLETS)
        wait_for(lambda: len(uplink.births) == OUTLETS, "a birth from every outlet")

        fleet.set_period(1.0)  # each outlet once a second
        wait_for(
            lambda: all(len(uplink.telemetry.get(o, [])) >= 2 for o in uplink.births),
            "two telemetry messages from every outlet",
        )
        fleet.set_period(0)
        with uplink.lock:
            first = {o: b[0].session for o, b in uplink.births.items()}
            for outlet, births in uplink.births.items():
                sent = uplink.telemetry[outlet]
                assert [t.session for t in sent] == [births[0].session] * len(sent)
                assert [t.seq for t in sent] == list(range(1, len(sent) + 1))
                assert len(births[0].devices) == 5

        # The broker tier restarts and forgets everything: the outlets reconnect with a
        # new session, but birth only once the server says it is online (retained).
        brokers.restart()
        uplink.close()
        uplink = Uplink(brokers.port)
        fleet.start_reconnect()
        assert fleet.reconnected()[1] == OUTLETS
        time.sleep(1)
        assert uplink.births == {}  # nobody births while the server is not online
        state = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="server-state")
        state.connect("127.0.0.1", brokers.port)
        state.loop_start()
        state.publish(wire.SERVER_STATE_TOPIC, json.dumps({"online": True}), qos=1, retain=True)
        wait_for(lambda: len(uplink.births) == OUTLETS, "a birth from every outlet again")
        state.loop_stop()
        state.disconnect()
        with uplink.lock:
            assert all(len(b) == 1 for b in uplink.births.values())
            again = {o: b[0].session for o, b in uplink.births.items()}
        assert again == {o: s + 1 for o, s in first.items()}
        assert fleet.born()[0] == OUTLETS
        assert uplink.refused == []
    finally:
        fleet.stop()
        uplink.close()
