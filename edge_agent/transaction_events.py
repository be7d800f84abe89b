"""Transaction events for local listeners: the clerk app's WebSocket and the tracker.

The uplink publishes what happened to a transaction after the outbox let go of it
(``transaction.result``: ``tx_id``, ``outcome``, ``case_number``, ``reason``). The events
are ``DeviceEvent`` records so the local API's WebSocket sends them in the same message
format as device events, with ``device_id`` ``"outbox"`` (docs/local-api.md). They never
leave the outlet.
"""

from __future__ import annotations

from typing import Final

from edge_agent.devices import DeviceEvent
from edge_agent.discovery.events import EventHub, Subscription

# The ``device_id`` clerk apps see on transaction events (part of the local API).
TRANSACTION_EVENTS_SOURCE: Final = "outbox"


class TransactionEvents:
    """A hub of transaction events, separate from the device events."""

    def __init__(self) -> None:
        self._hub = EventHub()

    def subscribe(self, *, maxsize: int = 256) -> Subscription:
        """A subscription to every transaction event published from now on."""
        return self._hub.subscribe(maxsize=maxsize)

    def publish(self, name: str, **data: object) -> None:
        """Tell local listeners about a transaction; ``data`` holds ids and statuses only."""
        self._hub.publish(DeviceEvent(device_id=TRANSACTION_EVENTS_SOURCE, name=name, data=data))
