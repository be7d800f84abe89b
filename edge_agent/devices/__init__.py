"""Devices attached to the outlet PC: one small driver interface, one package per kind.

A device kind is a package ``edge_agent.devices.<kind>`` (declaring ``KIND``: its driver,
capability, simulator, window binding) plus a profile in ``device_profiles/``; nothing
else changes (docs/development.md, "Add a device kind").

Exception tree::

    DeviceError                  (device_id, reason: short stable counter key)
    ├── DeviceUnavailable        the port is gone or cannot be opened (unplugged)
    ├── DeviceTimeout            the device stopped answering within its deadline
    ├── ProtocolError            a frame was malformed (checksum, length, noise)
    ├── DeviceBusy               another operation holds the device
    ├── DriverSettingsError      the profile's or local config's settings are invalid
                                 (also a ValueError); names the source file and field
    └── DeviceRefused            the device answered with a condition the clerk can fix
                                 (no card, paper out, cover open); ``hint`` says what to do
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_agent.devices.base import (
        DeviceBusy,
        DeviceError,
        DeviceEvent,
        DeviceIdentity,
        DeviceRefused,
        DeviceTimeout,
        DeviceUnavailable,
        Driver,
        DriverSettingsError,
        EventSink,
        Health,
        ProbeResult,
        ProtocolError,
        UsbFacts,
    )
    from edge_agent.devices.registry import driver_class, driver_names, register_driver

__all__ = [
    "DeviceBusy",
    "DeviceError",
    "DeviceEvent",
    "DeviceIdentity",
    "DeviceRefused",
    "DeviceTimeout",
    "DeviceUnavailable",
    "Driver",
    "DriverSettingsError",
    "EventSink",
    "Health",
    "ProbeResult",
    "ProtocolError",
    "UsbFacts",
    "driver_class",
    "driver_names",
    "register_driver",
]

# Loaded on first use (PEP 562): the document camera's capture process imports its kind's
# capture code without the driver interface, pydantic and the registry (issue 17).
_REGISTRY_NAMES = frozenset({"driver_class", "driver_names", "register_driver"})


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'edge_agent.devices' has no attribute {name!r}")
    home = "registry" if name in _REGISTRY_NAMES else "base"
    return getattr(importlib.import_module(f"edge_agent.devices.{home}"), name)
