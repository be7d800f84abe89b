"""Network devices (queue screens, evaluation pads, network printers) come from config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkDeviceConfig:
    """One configured network device: which profile, where, and under which stable id.

    ``address`` is ``host`` or ``host:port``; a profile's ``default_port`` fills in a
    missing port. ``serial`` is the number on the device's label (a technician retires
    the device by it). ``settings`` override the profile's driver settings for this device.
    """

    profile: str
    address: str
    device_id: str
    serial: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.device_id or len(self.device_id) > 128:
            raise ValueError("device_id must be 1-128 characters")
        if not self.address:
            raise ValueError("address must not be empty")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> NetworkDeviceConfig:
        """Build from a config entry ``{profile, address, device_id[, settings]}``."""
        return cls(
            profile=str(data["profile"]),
            address=str(data["address"]),
            device_id=str(data["device_id"]),
            serial=None if data.get("serial") is None else str(data["serial"]),
            settings=dict(data.get("settings") or {}),
        )

    def address_with_port(self, default_port: int | None) -> str:
        """``address``, with ``default_port`` appended when it names no port."""
        host, sep, port = self.address.rpartition(":")
        has_port = bool(sep) and port.isdigit() and not host.endswith(":")
        if has_port or default_port is None:
            return self.address
        return f"{self.address}:{default_port}"
