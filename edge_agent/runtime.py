"""What a running agent holds, shared by the MQTT session and the clerks' local API.

The daemon builds one ``AgentRuntime`` at start (devices, outbox, queue, event hub) and
hands it to both sides, so the local API never talks to MQTT and the MQTT session never
talks HTTP: they meet at the outbox (transactions out), the device event hub and the
transaction events (results in).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_agent.discovery.events import EventHub
from edge_agent.discovery.manager import DeviceManager
from edge_agent.fleet_config import ConfigApplier, LiveSettings
from edge_agent.outbox import Outbox
from edge_agent.queueing import QueueEngine, WindowConfig
from edge_agent.transaction_events import TransactionEvents


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRuntime:
    """The live parts of one agent; every field is owned (opened/closed) by the daemon."""

    outlet_id: str
    devices: DeviceManager
    outbox: Outbox
    queue: QueueEngine
    # The configured windows (``[[queue_windows]]``, or a fleet config's: changed in
    # place) by name: which pad, LED screen and keypad belong to each. Empty: devices
    # are found as before config existed (the only pad, the first LED controller,
    # keypad address = window number).
    windows: dict[str, WindowConfig] = field(default_factory=dict)
    # Settings a fleet config changes live, and what applies such configs.
    live: LiveSettings | None = None
    config: ConfigApplier | None = None
    # What happened to transactions after the outbox (published by the uplink).
    transactions: TransactionEvents = field(default_factory=TransactionEvents)

    def window_of_keypad(self, device_id: str, address: int) -> str | None:
        """The configured window of keypad ``address`` on bus ``device_id``, if any."""
        for config in self.windows.values():
            if config.keypad == device_id and config.keypad_address == address:
                return config.window
        return None

    def declares_keypad(self, device_id: str) -> bool:
        """True when some configured window names this keypad bus."""
        return any(config.keypad == device_id for config in self.windows.values())

    @property
    def events(self) -> EventHub:
        """The hub of device events (the device manager's)."""
        return self.devices.events
