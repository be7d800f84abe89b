"""Nested, frozen pieces of ``AgentSettings``: network devices, queue types and windows.

They live apart from ``settings.py`` so that the settings object stays one screen long;
each converts itself to the value object its subsystem takes (``NetworkDeviceConfig``,
``BusinessType``, ``WindowConfig``), so discovery and the queue never import the settings.
"""

from __future__ import annotations

from typing import Annotated, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from edge_agent.discovery import NetworkDeviceConfig
from edge_agent.queueing import BusinessType, WindowConfig
from govedge_wire.config import BusinessType as WireBusinessType
from govedge_wire.config import QueueWindow as WireQueueWindow

GIB: Final = 1024**3


class NetworkDeviceSetting(BaseModel):
    """One ``[[devices]]`` table: a network device's profile, address and stable id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    profile: Annotated[str, Field(min_length=1, max_length=64)]
    address: Annotated[str, Field(min_length=1, max_length=256)]
    device_id: Annotated[str, Field(min_length=1, max_length=128)]
    # The serial number on the device's label: a technician retires a network device by
    # it as by a USB device's (``edge-agent device retire SERIAL``).
    serial: Annotated[
        str | None, Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}$")
    ] = None
    settings: dict[str, JsonValue] = Field(default_factory=dict)

    def to_config(self) -> NetworkDeviceConfig:
        """The discovery value object for this device."""
        return NetworkDeviceConfig(
            profile=self.profile,
            address=self.address,
            device_id=self.device_id,
            serial=self.serial,
            settings=dict(self.settings),
        )


class BusinessTypeSetting(WireBusinessType):
    """One queue business type; the shape is the fleet config's (govedge_wire.config)."""

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


class QueueWindowSetting(WireQueueWindow):
    """One ``[[queue_windows]]`` table; the shape is the fleet config's (govedge_wire.config).

    ``window`` is what the hall hears and the LED shows; the LED controller and the keypad
    bus serve several windows, so each also takes this window's bus address (default: the
    window number itself, which needs a numeric window name).
    """

    def to_window(self) -> WindowConfig:
        """The queue's value object."""
        return WindowConfig(
            window=self.window,
            business_types=self.business_types,
            pad=self.pad,
            led=self.led,
            led_address=self.address(self.led_address),
            keypad=self.keypad,
            keypad_address=self.address(self.keypad_address),
        )


def check_windows(
    windows: tuple[QueueWindowSetting, ...], types: tuple[BusinessTypeSetting, ...]
) -> tuple[QueueWindowSetting, ...]:
    """Windows distinct, business types configured, no device address used twice.

    Each message names the entry (``[n]``, counted from 0 as in the env JSON list), its
    window and the field, never silently fixes anything.
    """
    codes = [t.code for t in types]
    seen: dict[str, int] = {}
    used: dict[tuple[str, str, int | None], str] = {}
    for index, entry in enumerate(windows):
        where = f"[{index}]"
        which = f" (window {entry.window!r})"
        if entry.window in seen:
            raise ValueError(f"{where}.window{which}: window {entry.window!r} is declared twice")
        seen[entry.window] = index
        for code in entry.business_types:
            if code not in codes:
                raise ValueError(
                    f"{where}.business_types{which}: {code!r} is not a configured business type "
                    f"(queue_business_types: {', '.join(codes)})"
                )
        if len(set(entry.business_types)) != len(entry.business_types):
            raise ValueError(f"{where}.business_types{which}: a business type is listed twice")
        for field, on_bus in window_fields():
            device = getattr(entry, field)
            given = getattr(entry, f"{field}_address") if on_bus else None
            if device is None:
                if given is not None:
                    raise ValueError(
                        f"{where}.{field}_address{which}: set {field} (the device_id) too"
                    )
                continue
            address = entry.address(given) if on_bus else None
            if on_bus and address is None:
                raise ValueError(
                    f"{where}.{field}_address{which}: window {entry.window!r} is not a number "
                    f"1-254, so give its {field} bus address"
                )
            other = used.get((field, device, address))
            if other is not None:
                at = "" if address is None else f" at address {address}"
                raise ValueError(
                    f"{where}.{field}{which}: {device!r}{at} already belongs to window {other!r}"
                )
            used[(field, device, address)] = entry.window
    return windows


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
    if not 1 <= len(value) <= 64:
        raise ValueError("unknown time zone (use an IANA name such as Asia/Shanghai)")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name no file can have
        raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
    return value


def window_fields() -> list[tuple[str, bool]]:
    """(config field, on a bus) of each window-bound device kind, from the kind registry."""
    from edge_agent.devices.registry import kinds

    return [
        (kind.window_field, kind.window_bus)
        for kind in kinds().values()
        if kind.window_field is not None
    ]
