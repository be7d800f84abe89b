"""A stand-in fleet server for agent tests: a plain paho client that acks transactions.

It records every ``Transaction`` the outlet sends (resends included) and answers each
with a ``TransactionAck`` (``accepted``), as the real server does after its commit. It
can also publish a ``TransactionResult``. Reconnects by itself after a broker restart.
"""

from __future__ import annotations

import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from govedge_wire import (
    AckEntry,
    Kind,
    Transaction,
    TransactionAck,
    TransactionAcks,
    TransactionResult,
    WireError,
    decode,
    encode,
    topic_for,
)


class FakeServer:
    """Acks every transaction of one outlet; ``received`` lists them in arrival order."""

    def __init__(self, *, port: int, outlet_id: str, ack: bool = True) -> None:
        self.outlet_id = outlet_id
        self.ack = ack
        self.received: list[Transaction] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"fake-server-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise AssertionError("fake server could not subscribe")

    def _on_connect(self, client: mqtt.Client, *_args: object) -> None:
        client.subscribe(topic_for(self.outlet_id, Kind.TRANSACTION), qos=1)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            message = decode(msg.topic, bytes(msg.payload))
        except WireError:
            return
        if not isinstance(message, Transaction):
            return
        with self._lock:
            self.received.append(message)
        if self.ack:
            ack = TransactionAck(
                outlet_id=self.outlet_id, session=0, seq=0, tx_id=message.tx_id, status="accepted"
            )
            self.client.publish(topic_for(self.outlet_id, Kind.TRANSACTION_ACK), encode(ack), qos=1)

    def tx_ids(self) -> list[str]:
        """Distinct transaction ids in order of first arrival."""
        with self._lock:
            return list(dict.fromkeys(m.tx_id for m in self.received))

    def first_sends(self) -> list[Transaction]:
        """The ``attempt == 1`` sends, in arrival order."""
        with self._lock:
            return [m for m in self.received if m.attempt == 1]

    def send_ack_and_result(self, tx_id: str, result: TransactionResult) -> None:
        """The ack and the result back to back (a fast upstream), and wait for both."""
        ack = TransactionAck(
            outlet_id=self.outlet_id, session=0, seq=0, tx_id=tx_id, status="accepted"
        )
        sent = [
            self.client.publish(
                topic_for(self.outlet_id, Kind.TRANSACTION_ACK), encode(ack), qos=1
            ),
            self.client.publish(
                topic_for(self.outlet_id, Kind.TRANSACTION_RESULT), encode(result), qos=1
            ),
        ]
        for info in sent:
            info.wait_for_publish(timeout=5)

    def send_acks(self, acks: list[AckEntry], then: TransactionResult | None = None) -> None:
        """Several acks in one ``TransactionAcks`` (optionally a result right behind it),
        and wait until the broker has them."""
        batch = TransactionAcks(outlet_id=self.outlet_id, session=0, seq=0, acks=acks)
        sent = [
            self.client.publish(
                topic_for(self.outlet_id, Kind.TRANSACTION_ACK), encode(batch), qos=1
            )
        ]
        if then is not None:
            sent.append(
                self.client.publish(
                    topic_for(self.outlet_id, Kind.TRANSACTION_RESULT), encode(then), qos=1
                )
            )
        for info in sent:
            info.wait_for_publish(timeout=5)

    def send_result(self, result: TransactionResult) -> None:
        """Publish a transaction result to the outlet and wait until the broker has it."""
        info = self.client.publish(
            topic_for(self.outlet_id, Kind.TRANSACTION_RESULT), encode(result), qos=1
        )
        info.wait_for_publish(timeout=5)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(condition: object, *, timeout: float, what: str) -> None:
    """Poll ``condition()`` every 20 ms until true, or fail naming ``what``."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
