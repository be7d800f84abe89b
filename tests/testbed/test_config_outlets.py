"""The config-outlet simulator against a real Mosquitto, configs signed by the test.

The test plays the server: it signs envelopes with ``sign_config``, publishes them
retained on each outlet's ``down/config`` and reads what the outlets answer on
``up/reported`` (and their births) with a paho observer.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from govedge_testbed import Mosquitto
from govedge_testbed.config_outlets import ConfigOutlets
from govedge_wire import codec
from govedge_wire.config import SignedConfig, config_message, key_id_for, sign_config
from govedge_wire.topics import Kind, topic_for

KEY = Ed25519PrivateKey.generate()
KEY_ID = key_id_for(KEY.public_key())


class FakeServer:
    """Publishes signed configs retained and records the outlets' births and reports."""

    def __init__(self, broker: Mosquitto, tls: ssl.SSLContext | None = None) -> None:
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex}")
        if tls is not None:
            self.client.tls_set_context(tls)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.client.subscribe([("govedge/v1/+/up/birth", 1), ("govedge/v1/+/up/reported", 1)])
        assert self._subscribed.wait(10), "observer not subscribed"

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received.append(json.loads(msg.payload))

    def messages(self, kind: str, outlet: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                m
                for m in self.received
                if m["kind"] == kind and (outlet is None or m["outlet_id"] == outlet)
            ]

    def publish(self, signed: SignedConfig, *, outlet: str | None = None) -> None:
        """Publish ``signed`` retained on its outlet's (or ``outlet``'s) ``down/config``."""
        target = outlet or signed.outlet_id
        message = config_message(signed, session=1, seq=signed.version)
        info = self.client.publish(
            topic_for(target, Kind.DESIRED_CONFIG), codec.encode(message), qos=1, retain=True
        )
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def sign(outlet: str, version: int, interval: float, key: Ed25519PrivateKey = KEY) -> SignedConfig:
    return sign_config(
        key,
        key_id=KEY_ID,
        outlet_id=outlet,
        version=version,
        config={"telemetry": {"interval_s": interval}, "log_level": "INFO"},
    )


def until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s: {what}")
        time.sleep(0.05)


@pytest.fixture
def server(broker: Mosquitto) -> Iterator[FakeServer]:
    fake = FakeServer(broker)
    yield fake
    fake.close()


@pytest.fixture
def outlet_ids() -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"cfgsim-{tag}-{i:03d}" for i in range(50)]


@pytest.fixture
def outlets(
    broker: Mosquitto, outlet_ids: list[str], server: FakeServer
) -> Iterator[ConfigOutlets]:
    fleet = ConfigOutlets("127.0.0.1", broker.port, outlet_ids, {KEY_ID: KEY.public_key()})
    fleet.start(timeout=60)
    yield fleet
    fleet.stop()


def test_fifty_outlets_apply_and_report(
    outlets: ConfigOutlets, outlet_ids: list[str], server: FakeServer
) -> None:
    until(lambda: len(server.messages("birth")) == 50, "50 births")
    for birth in server.messages("birth"):
        assert birth["config_version"] is None
        assert birth["config_hash"] is None
        assert birth["config_key_ids"] == [KEY_ID]

    signed = {outlet: sign(outlet, 1, 60.0) for outlet in outlet_ids}
    for envelope in signed.values():
        server.publish(envelope)
    the_hash = signed[outlet_ids[0]].hash
    logs = outlets.wait_applied(the_hash, timeout=60)

    until(lambda: len(server.messages("reported")) == 50, "50 reports")
    for outlet in outlet_ids:
        assert (logs[outlet].applied_version, logs[outlet].applied_hash) == (1, the_hash)
        [report] = server.messages("reported", outlet)
        assert report["status"] == "applied"
        assert (report["config_version"], report["config_hash"]) == (1, the_hash)
        [applied] = logs[outlet].applied
        assert applied.arrived_at <= applied.applied_at


def test_bad_signature_is_refused_and_reported(
    outlets: ConfigOutlets, outlet_ids: list[str], server: FakeServer
) -> None:
    first = outlet_ids[0]
    good = sign(first, 1, 60.0)
    server.publish(good)
    outlets.wait_applied(good.hash, [first], timeout=30)

    # Another key under the held key id: the signature does not verify.
    forged = sign(first, 2, 5.0, key=Ed25519PrivateKey.generate())
    server.publish(forged)
    until(lambda: len(server.messages("reported", first)) == 2, "the refusal report")
    refusal = server.messages("reported", first)[1]
    assert refusal["status"] == "refused"
    assert refusal["reason"] == "bad_signature"
    # The outlet keeps running its last good config and says so.
    assert (refusal["config_version"], refusal["config_hash"]) == (1, good.hash)
    log = outlets.snapshot()[first]
    assert (log.applied_version, log.applied_hash) == (1, good.hash)
    assert [r.reason for r in log.refused] == ["bad_signature"]


def test_retained_applied_version_again_is_not_reported(
    outlets: ConfigOutlets, outlet_ids: list[str], server: FakeServer
) -> None:
    outlet = outlet_ids[1]
    v1 = sign(outlet, 1, 60.0)
    server.publish(v1)
    outlets.wait_applied(v1.hash, [outlet], timeout=30)

    server.publish(v1)  # the retained copy again, as on every resubscribe
    v2 = sign(outlet, 2, 45.0)
    server.publish(v2)  # same topic, QoS 1: arrives after the copy of v1
    outlets.wait_applied(v2.hash, [outlet], timeout=30)
    until(lambda: len(server.messages("reported", outlet)) == 2, "the report of v2")

    reports = server.messages("reported", outlet)
    assert [(r["status"], r["config_version"]) for r in reports] == [
        ("applied", 1),
        ("applied", 2),
    ]
    log = outlets.snapshot()[outlet]
    assert log.already_applied == 1
    assert log.refused == []

    # An older version after a newer one is a replay: refused and reported.
    server.publish(v1)
    until(lambda: len(server.messages("reported", outlet)) == 3, "the replay refusal")
    replay = server.messages("reported", outlet)[2]
    assert (replay["status"], replay["reason"], replay["offered_version"]) == (
        "refused",
        "replayed",
        1,
    )
    assert replay["config_version"] == 2


def test_reconnected_outlet_recognises_its_retained_config(
    broker: Mosquitto, outlets: ConfigOutlets, outlet_ids: list[str], server: FakeServer
) -> None:
    v1 = {outlet: sign(outlet, 1, 60.0) for outlet in outlet_ids[:5]}
    for envelope in v1.values():
        server.publish(envelope)
    outlets.wait_applied(v1[outlet_ids[0]].hash, list(v1), timeout=30)
    until(lambda: len(server.messages("reported")) == 5, "5 reports")
    outlets.stop()

    # The same outlets come back with their last good config, as a restarted agent does:
    # the broker hands each its retained config again on the new subscription.
    applied = {outlet: (1, envelope.hash) for outlet, envelope in v1.items()}
    again = ConfigOutlets(
        "127.0.0.1", broker.port, list(v1), {KEY_ID: KEY.public_key()}, applied=applied
    )
    again.start(timeout=30)
    try:
        logs = again.wait(
            lambda logs: all(log.already_applied == 1 for log in logs.values()), timeout=30
        )
    finally:
        again.stop()
    until(lambda: len(server.messages("birth")) == 55, "the 5 new births")
    for outlet in v1:
        assert logs[outlet].reports_sent == 0
        assert logs[outlet].applied == []
        rebirth = server.messages("birth", outlet)[-1]
        assert (rebirth["config_version"], rebirth["config_hash"]) == (1, v1[outlet].hash)
    assert len(server.messages("reported")) == 5  # nothing new reported
