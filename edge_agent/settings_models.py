"""Nested, frozen pieces of ``AgentSettings``: configured network devices, queue types.

They live apart from ``settings.py`` so that the settings object stays one screen long;
each converts itself to the value object its subsystem takes (``NetworkDeviceConfig``,
``BusinessType``), so discovery and the queue never import the settings.
"""

from __future__ import annotations

from typing import Annotated, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from edge_agent.discovery import NetworkDeviceConfig
from edge_agent.queueing import BusinessType

GIB: Final = 1024**3


class NetworkDeviceSetting(BaseModel):
    """One ``[[devices]]`` table: a network device's profile, address and stable id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    profile: Annotated[str, Field(min_length=1, max_length=64)]
    address: Annotated[str, Field(min_length=1, max_length=256)]
    device_id: Annotated[str, Field(min_length=1, max_length=128)]
    settings: dict[str, JsonValue] = Field(default_factory=dict)

    def to_config(self) -> NetworkDeviceConfig:
        """The discovery value object for this device."""
        return NetworkDeviceConfig(
            profile=self.profile,
            address=self.address,
            device_id=self.device_id,
            settings=dict(self.settings),
        )


class BusinessTypeSetting(BaseModel):
    """One queue business type: code, one-letter ticket prefix, name printed on tickets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")]
    prefix: Annotated[str, Field(pattern=r"^[A-Z]$")]
    name: Annotated[str, Field(min_length=1, max_length=32)]

    def to_business_type(self) -> BusinessType:
        """The queue engine's value object."""
        return BusinessType(code=self.code, prefix=self.prefix, name=self.name)


DEFAULT_BUSINESS_TYPES: Final = (
    BusinessTypeSetting(code="general", prefix="A", name="综合业务"),
    BusinessTypeSetting(code="social", prefix="B", name="社保医保"),
    BusinessTypeSetting(code="realestate", prefix="C", name="不动产"),
    BusinessTypeSetting(code="tax", prefix="D", name="税务"),
)


def check_business_types(
    types: tuple[BusinessTypeSetting, ...],
) -> tuple[BusinessTypeSetting, ...]:
    """At least one type; codes and prefixes distinct (``ValueError`` otherwise)."""
    if not types:
        raise ValueError("needs at least one business type")
    for attr in ("code", "prefix"):
        values = [getattr(t, attr) for t in types]
        if len(set(values)) != len(values):
            raise ValueError(f"business type {attr}s must be distinct")
    return types


def check_devices(
    devices: tuple[NetworkDeviceSetting, ...],
) -> tuple[NetworkDeviceSetting, ...]:
    """Device ids distinct (``ValueError`` otherwise)."""
    ids = [d.device_id for d in devices]
    if len(set(ids)) != len(ids):
        raise ValueError("device_id values must be distinct")
    return devices


def check_timezone(value: str) -> str:
    """An IANA zone name this machine knows (``ValueError`` otherwise)."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
    return value
