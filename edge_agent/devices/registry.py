"""Driver registry: profiles name a driver, this maps the name to its class."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TypeVar

from edge_agent.devices.base import Driver

_DRIVERS: dict[str, type[Driver]] = {}
_D = TypeVar("_D", bound=type[Driver])


def register_driver(name: str) -> Callable[[_D], _D]:
    """Class decorator: make a driver available to profiles under ``name``."""

    def decorate(cls: _D) -> _D:
        if name in _DRIVERS and _DRIVERS[name] is not cls:
            raise ValueError(f"driver name {name!r} registered twice")
        _DRIVERS[name] = cls
        return cls

    return decorate


def _load_all() -> None:
    # Importing every module of the drivers package registers it: a new device kind
    # is a new module there plus a profile, and nothing else changes.
    from edge_agent.devices import drivers

    for module in pkgutil.iter_modules(drivers.__path__):
        importlib.import_module(f"{drivers.__name__}.{module.name}")


def driver_class(name: str) -> type[Driver]:
    """The driver class registered under ``name``; ``KeyError`` if there is none."""
    if name not in _DRIVERS:
        _load_all()
    return _DRIVERS[name]


def driver_names() -> list[str]:
    """Every registered driver name, sorted."""
    _load_all()
    return sorted(_DRIVERS)
