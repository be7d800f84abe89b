"""Kind and driver registry: every ``edge_agent.devices.<kind>`` package is a kind.

Each kind package declares ``KIND`` (a ``DeviceKind``); profiles name a driver, which maps
to its class here. Adding a kind is one package plus one profile (docs/development.md).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from edge_agent.devices.base import Driver

if TYPE_CHECKING:
    from edge_agent.devices.simulation import Simulate

_DRIVERS: dict[str, type[Driver]] = {}
_D = TypeVar("_D", bound=type[Driver])


@dataclass(frozen=True)
class DeviceKind:
    """What a kind package declares about itself.

    ``capability`` is the Protocol the local API and the queue ask for; ``simulators``
    speak the device's real bytes and ``simulate`` attaches them for ``--simulate``.
    A window-bound kind is named per queue window by the config field ``window_field``
    (``[[queue_windows]] pad = ...``); ``window_bus`` kinds serve several windows on one
    bus, so a window also gives ``<window_field>_address``.
    """

    name: str
    capability: type
    drivers: tuple[type[Driver], ...]
    simulators: tuple[type, ...]
    simulate: Simulate | None = None
    window_field: str | None = None
    window_bus: bool = False

    @property
    def window_bound(self) -> bool:
        """Whether a queue window names its own device of this kind."""
        return self.window_field is not None


def register_driver(name: str) -> Callable[[_D], _D]:
    """Class decorator: make a driver available to profiles under ``name``."""

    def decorate(cls: _D) -> _D:
        if name in _DRIVERS and _DRIVERS[name] is not cls:
            raise ValueError(f"driver name {name!r} registered twice")
        _DRIVERS[name] = cls
        return cls

    return decorate


@functools.cache
def kinds() -> dict[str, DeviceKind]:
    """Every device kind, by name: each subpackage of ``edge_agent.devices`` with ``KIND``."""
    import edge_agent.devices as package

    found: dict[str, DeviceKind] = {}
    for module in pkgutil.iter_modules(package.__path__):
        if not module.ispkg:
            continue
        kind = getattr(importlib.import_module(f"{package.__name__}.{module.name}"), "KIND", None)
        if not isinstance(kind, DeviceKind):
            continue
        if kind.name != module.name:
            raise ValueError(f"package {module.name!r} declares kind {kind.name!r}")
        found[kind.name] = kind
    return dict(sorted(found.items()))


def kind_names() -> list[str]:
    """Every kind name, sorted (the profile schema's ``kind`` enum)."""
    return list(kinds())


def window_bound_kinds() -> list[str]:
    """The kinds a queue window names its own device of."""
    return [name for name, kind in kinds().items() if kind.window_bound]


def kinds_with(capability: type) -> frozenset[str]:
    """The kinds whose declared capability is ``capability``."""
    return frozenset(name for name, kind in kinds().items() if kind.capability is capability)


def driver_class(name: str) -> type[Driver]:
    """The driver class registered under ``name``; ``KeyError`` if there is none."""
    if name not in _DRIVERS:
        kinds()
    return _DRIVERS[name]


def driver_names() -> list[str]:
    """Every registered driver name, sorted."""
    kinds()
    return sorted(_DRIVERS)
