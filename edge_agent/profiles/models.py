"""Typed, frozen device-profile models: what one YAML file in ``device_profiles/`` means.

The JSON Schema (``device_profiles/schema.json``) is the contract technicians edit
against and the source of line-numbered errors; these models are what the code uses
after a file passed it, so the rest of the agent never touches raw YAML.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# One name per kind package in edge_agent.devices (tests/profiles/test_kinds.py checks it).
Kind = Literal[
    "caller_keypad",
    "document_camera",
    "evaluation_pad",
    "id_card_reader",
    "led_screen",
    "social_security_card_reader",
    "ticket_printer",
]
Subsystem = Literal["tty", "usb", "usbmisc", "video4linux", "hidraw"]
Threshold = bool | int | float | str
Level = Literal["ok", "warn", "crit"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _as_patterns(value: object) -> object:
    # The YAML allows one glob or a list of globs; the model always holds a tuple.
    return (value,) if isinstance(value, str) else value


class UsbRule(_Frozen):
    """Match a local device by udev facts; every field given must match."""

    subsystem: Subsystem
    vendor_id: str | None = None
    product_id: str | None = None
    product: tuple[str, ...] = ()
    manufacturer: tuple[str, ...] = ()
    serial: tuple[str, ...] = ()
    port_path: tuple[str, ...] = ()
    kernel_driver: str | None = None
    interface_class: str | None = None

    @field_validator("product", "manufacturer", "serial", "port_path", mode="before")
    @classmethod
    def _patterns(cls, value: object) -> object:
        return _as_patterns(value)

    @field_validator("vendor_id", "product_id", "interface_class")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.lower() if value is not None else None

    @property
    def has_string_rule(self) -> bool:
        """True if the rule pins a product, manufacturer, serial or port string."""
        return bool(self.product or self.manufacturer or self.serial or self.port_path)


class NetworkRule(_Frozen):
    """The device is reached at an address given in local config, not discovered."""

    protocol: Literal["tcp", "udp"] = "tcp"
    default_port: int | None = Field(default=None, ge=1, le=65535)


class MatchRule(_Frozen):
    """One alternative of a profile's ``match`` list: exactly one of ``usb``, ``network``."""

    usb: UsbRule | None = None
    network: NetworkRule | None = None


class HealthRule(_Frozen):
    """A health metric the driver reports and the thresholds that make it warn or crit."""

    metric: str
    description: str | None = None
    compare: Literal["above", "below", "equals"] = "above"
    warn: Threshold | None = None
    crit: Threshold | None = None

    def level(self, value: object) -> Level:
        """``crit``, ``warn`` or ``ok`` for a reported ``value`` (``ok`` if incomparable)."""
        if self.crit is not None and self._hits(value, self.crit):
            return "crit"
        if self.warn is not None and self._hits(value, self.warn):
            return "warn"
        return "ok"

    def _hits(self, value: object, threshold: Threshold) -> bool:
        if self.compare == "equals":
            return value == threshold
        numeric = (int, float)
        if isinstance(value, bool) or not isinstance(value, numeric):
            return False
        if isinstance(threshold, bool) or not isinstance(threshold, numeric):
            return False
        return value >= threshold if self.compare == "above" else value <= threshold


class Profile(_Frozen):
    """One device model: recognition rules, driver, driver settings, health thresholds."""

    id: str
    name: str
    kind: Kind
    driver: str
    model: str | None = None
    vendor: str | None = None
    notes: str | None = None
    match: tuple[MatchRule, ...]
    settings: Mapping[str, Any] = Field(default_factory=dict)
    health: tuple[HealthRule, ...] = ()
    source: Path | None = None

    @property
    def usb_rules(self) -> tuple[UsbRule, ...]:
        """The local-device rules of this profile."""
        return tuple(rule.usb for rule in self.match if rule.usb is not None)

    @property
    def network_rule(self) -> NetworkRule | None:
        """The network rule, if devices of this model are configured by address."""
        return next((rule.network for rule in self.match if rule.network is not None), None)

    def health_level(self, health: Mapping[str, object]) -> Level:
        """The worst level of all thresholded metrics present in ``health``."""
        levels = {rule.level(health[rule.metric]) for rule in self.health if rule.metric in health}
        for level in ("crit", "warn"):
            if level in levels:
                return level
        return "ok"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileProblem:
    """Something wrong in a profile file, located for a person: file, line and field."""

    file: Path
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        line = "?" if self.line is None else str(self.line)
        return f"{self.file}:{line}: {self.field}: {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileSet:
    """The profiles that loaded cleanly, plus the problems of those that did not."""

    profiles: tuple[Profile, ...] = ()
    problems: tuple[ProfileProblem, ...] = ()
    _by_id: Mapping[str, Profile] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {profile.id: profile for profile in self.profiles})

    def __iter__(self) -> Iterator[Profile]:
        return iter(self.profiles)

    def __len__(self) -> int:
        return len(self.profiles)

    def __contains__(self, profile_id: object) -> bool:
        return profile_id in self._by_id

    def get(self, profile_id: str) -> Profile | None:
        """The profile with ``profile_id``, or None."""
        return self._by_id.get(profile_id)

    @property
    def ok(self) -> bool:
        """True when no file had a problem."""
        return not self.problems
