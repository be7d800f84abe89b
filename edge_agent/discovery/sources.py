"""Where device add/remove events come from: the ``EventSource`` interface and the
``ControlledSource`` that tests (and demos) drive by hand.

A source hands events to the device manager on the event loop's thread and can list the
devices present right now (``scan``), which the manager uses at start and to reconcile
events it may have missed.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable

from edge_agent.devices.description import DeviceDescription, SourceEvent

EventCallback = Callable[[SourceEvent], None]


class EventSource(abc.ABC):
    """A stream of device add/remove events plus a way to list what is present now."""

    @abc.abstractmethod
    async def start(self, deliver: EventCallback) -> None:
        """Begin delivering events; ``deliver`` is always called on the loop's thread."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop delivering events and release resources; safe to call twice."""

    @abc.abstractmethod
    async def scan(self) -> list[DeviceDescription]:
        """The devices present right now (used at start and for reconciling)."""


def _key(device: DeviceDescription) -> object:
    return device.sys_path or device.device_node or device


class ControlledSource(EventSource):
    """An event source whose devices and events a test sets by hand.

    Used where there is no USB bus or udevd (CI, this development machine): the test
    plugs and unplugs ``DeviceDescription`` values, and they reach the manager through
    the same matching and lifecycle code a real udev event takes. ``emit=False`` changes
    what ``scan`` reports without an event, as when udev drops one.
    """

    def __init__(self, devices: Iterable[DeviceDescription] = ()) -> None:
        self._present: dict[object, DeviceDescription] = {_key(d): d for d in devices}
        self._deliver: EventCallback | None = None

    @property
    def started(self) -> bool:
        """True between ``start`` and ``stop``."""
        return self._deliver is not None

    async def start(self, deliver: EventCallback) -> None:
        """Remember where to deliver events."""
        self._deliver = deliver

    async def stop(self) -> None:
        """Deliver no more events."""
        self._deliver = None

    async def scan(self) -> list[DeviceDescription]:
        """The devices the test says are plugged in."""
        return list(self._present.values())

    def add(self, device: DeviceDescription, *, emit: bool = True) -> None:
        """Plug ``device`` in; deliver an ``add`` event unless ``emit`` is false."""
        self._present[_key(device)] = device
        if emit and self._deliver is not None:
            self._deliver(SourceEvent(action="add", device=device))

    def remove(self, device: DeviceDescription, *, emit: bool = True) -> None:
        """Unplug ``device``; deliver a ``remove`` event unless ``emit`` is false."""
        self._present.pop(_key(device), None)
        if emit and self._deliver is not None:
            self._deliver(SourceEvent(action="remove", device=device))
