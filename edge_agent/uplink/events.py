"""Device events on their way to the fleet: PII guard, wire conversion, inventory triggers.

Drivers already mask personal data, but an event that leaves the outlet passes one more
guard here: any key that looks like a name, ID number, address, photo, fingerprint,
phone or birth date is dropped (at any depth) and counted, whatever its value. Values
that are not JSON become strings; long strings are cut.

``INVENTORY_EVENTS`` are the events after which the server's inventory is stale, so the
session publishes a rebirth (debounced) when it sees one.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Final, Literal

from pydantic import JsonValue

from edge_agent.devices import DeviceEvent
from govedge_wire import Event

INVENTORY_EVENTS: Final = frozenset(
    {"device.ready", "device.unplugged", "device.error", "device.retired"}
)
PII_KEY: Final = re.compile(
    r"name|id_?num|id_?no|idcard|cert_?no|address|addr|photo|image|picture|fingerprint"
    r"|phone|mobile|birth|ssn|social_?no",
    re.IGNORECASE,
)
_MAX_STRING: Final = 256
_MAX_KEYS: Final = 64
_MAX_DEPTH: Final = 4
Severity = Literal["info", "warning", "error"]
_SEVERITIES: Final[dict[str, Severity]] = {"info": "info", "warning": "warning", "error": "error"}


class PiiGuard:
    """Strips PII-looking keys from event data; ``dropped`` counts the keys removed."""

    def __init__(self) -> None:
        self.dropped = 0

    def scrub(self, data: Mapping[str, Any]) -> dict[str, JsonValue]:
        """A JSON-safe copy of ``data`` without PII-looking keys."""
        return self._mapping(data, depth=0)

    def _mapping(self, data: Mapping[Any, Any], *, depth: int) -> dict[str, JsonValue]:
        clean: dict[str, JsonValue] = {}
        for key, value in list(data.items())[:_MAX_KEYS]:
            name = str(key)[:128]
            if not name or PII_KEY.search(name):
                self.dropped += 1
                continue
            clean[name] = self._value(value, depth=depth + 1)
        return clean

    def _value(self, value: object, *, depth: int) -> JsonValue:
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return value[:_MAX_STRING]
        if depth >= _MAX_DEPTH:
            return str(value)[:_MAX_STRING]
        if isinstance(value, Mapping):
            return self._mapping(value, depth=depth)
        if isinstance(value, list | tuple | set | frozenset):
            return [self._value(item, depth=depth + 1) for item in list(value)[:_MAX_KEYS]]
        return str(value)[:_MAX_STRING]


def to_wire_event(
    event: DeviceEvent, *, outlet_id: str, session: int, seq: int, guard: PiiGuard
) -> Event:
    """The ``govedge_wire.Event`` for a device event ."""
    return Event(
        outlet_id=outlet_id,
        session=session,
        seq=seq,
        name=event.name[:128] or "device.event",
        severity=_SEVERITIES.get(event.severity, "info"),
        device_id=event.device_id[:128] or None,
        data=guard.scrub(event.data),
    )


class SeenResults:
    """Remembers recent transaction results by ``(tx_id, outcome)``: the server may resend.

    Bounded (oldest forgotten first) and in memory: after a restart a resent result is
    shown to the clerk app once more, which is harmless.
    """

    def __init__(self, *, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def first_time(self, tx_id: str, outcome: str) -> bool:
        """True the first time ``(tx_id, outcome)`` is seen (and remember it)."""
        key = (tx_id, outcome)
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return True
