"""What a running agent holds, shared by the MQTT session and the clerks' local API.

The daemon builds one ``AgentRuntime`` at start (devices, outbox, queue, event hub) and
hands it to both sides, so the local API never talks to MQTT and the MQTT session never
talks HTTP: they meet at the outbox (transactions out) and the event hub (device events
and transaction results in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from edge_agent.devices import DeviceEvent
from edge_agent.discovery.events import EventHub
from edge_agent.discovery.manager import DeviceManager
from edge_agent.outbox import Outbox
from edge_agent.queueing import QueueEngine

# Events about transactions travel on the same hub as device events, under this
# pseudo device id, so a clerk app needs one WebSocket for everything.
OUTBOX_DEVICE_ID: Final = "outbox"


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRuntime:
    """The live parts of one agent; every field is owned (opened/closed) by the daemon."""

    outlet_id: str
    devices: DeviceManager
    outbox: Outbox
    queue: QueueEngine

    @property
    def events(self) -> EventHub:
        """The one hub of device and transaction events (the device manager's)."""
        return self.devices.events

    def publish_transaction_event(self, name: str, **data: object) -> None:
        """Tell local listeners about a transaction (``transaction.result`` and the like).

        ``data`` must hold no personal data: ids, statuses, case numbers only.
        """
        self.events.publish(DeviceEvent(device_id=OUTBOX_DEVICE_ID, name=name, data=data))
