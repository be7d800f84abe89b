"""Device discovery: hot-plug events matched against device profiles, drivers run for them.

``UdevSource`` watches udev (netlink monitor in a thread, database scan at start and for
reconciling); ``ControlledSource`` is the stand-in tests drive where no USB bus exists.
``Matcher`` picks the most specific profile and a stable device id. ``DeviceManager``
debounces events, opens and probes drivers with deadlines, retries failures with backoff,
serves ``inventory()``, ``health()``, ``driver(id)`` and a fan-out of ``DeviceEvent``.

No exception tree of its own: ``driver(id)`` raises ``edge_agent.devices.DeviceUnavailable``;
driver failures are counted by reason (``DeviceManager.errors()``), never raised.
"""

from edge_agent.devices.description import Action, DeviceDescription, SourceEvent
from edge_agent.devices.network_config import NetworkDeviceConfig
from edge_agent.discovery.events import EventHub, Subscription
from edge_agent.discovery.lifecycle import State
from edge_agent.discovery.manager import DeviceManager, DriverFactory, UnknownRetirement
from edge_agent.discovery.matching import (
    Matcher,
    ProfileMatch,
    make_device_id,
    rule_score,
    stable_identity,
)
from edge_agent.discovery.retired import RetiredDevices, RetiredFileError
from edge_agent.discovery.sources import ControlledSource, EventCallback, EventSource
from edge_agent.discovery.udev import UdevSource, description_from_udev

__all__ = [
    "Action",
    "ControlledSource",
    "DeviceDescription",
    "DeviceManager",
    "DriverFactory",
    "EventCallback",
    "EventHub",
    "EventSource",
    "Matcher",
    "NetworkDeviceConfig",
    "ProfileMatch",
    "RetiredDevices",
    "RetiredFileError",
    "SourceEvent",
    "State",
    "Subscription",
    "UdevSource",
    "UnknownRetirement",
    "description_from_udev",
    "make_device_id",
    "rule_score",
    "stable_identity",
]
