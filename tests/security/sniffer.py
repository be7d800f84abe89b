"""A plain paho MQTT 5 client on the test's broker: records what it is subscribed to and
publishes with QoS 1, waiting for the broker's PUBACK."""

from __future__ import annotations

import queue
import threading
import uuid
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

PUBACK_TIMEOUT_S = 10


@dataclass
class Sniffer:
    """Subscribed to ``topic`` (default ``#``: every message that crosses the broker)."""

    port: int
    topic: str = "#"
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        subscribed: queue.Queue[bool] = queue.Queue()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"test-sniffer-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.max_inflight_messages_set(100)
        self.client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda *_a: subscribed.put(True)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        assert subscribed.get(timeout=10)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def snapshot(self) -> list[tuple[str, bytes]]:
        with self.lock:
            return list(self.messages)

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish with QoS 1 and wait until the broker has it."""
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=PUBACK_TIMEOUT_S)
        assert info.is_published(), f"no PUBACK for {topic}"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
