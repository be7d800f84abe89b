"""A fake driver that stands in for a device in the device-manager tests.

No real device (and no USB bus) exists on the test machine, so this in-test class plays
the device: its behaviour is set per device through ``FAKE``. The real drivers are tested
by their own tests against their simulators; here only the manager's lifecycle is tested.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from edge_agent.devices import Driver, Health, ProbeResult, ProtocolError, register_driver
from edge_agent.devices.settings import DriverSettings

FAKE_DRIVER = "test_fake_device"


@dataclass
class FakeHardware:
    """Scripted behaviour and call counts, keyed by device id."""

    fail_probes: Counter[str] = field(default_factory=Counter)
    open_raises: set[str] = field(default_factory=set)
    health_raises: set[str] = field(default_factory=set)
    hang_probe: set[str] = field(default_factory=set)
    opens: Counter[str] = field(default_factory=Counter)
    probes: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)
    addresses: dict[str, str] = field(default_factory=dict)
    settings: dict[str, dict[str, object]] = field(default_factory=dict)


FAKE = FakeHardware()


class FakeSettings(DriverSettings):
    """The keys the manager tests' profiles and configs use (unknown keys are errors)."""

    baud_rate: int = 9600
    encoding: str = "gb18030"
    cut: Literal["full", "partial"] = "partial"


@register_driver(FAKE_DRIVER)
class FakeDriver(Driver):
    """Stands in for a device; see the module docstring."""

    kind = "id_card_reader"
    settings_model: ClassVar[type[DriverSettings]] = FakeSettings

    async def open(self) -> None:
        FAKE.opens[self.device_id] += 1
        FAKE.addresses[self.device_id] = self.identity.address
        FAKE.settings[self.device_id] = dict(self.settings)
        if self.device_id in FAKE.open_raises:
            raise RuntimeError("driver bug in open")

    async def probe(self) -> ProbeResult:
        FAKE.probes[self.device_id] += 1
        if self.device_id in FAKE.hang_probe:
            await asyncio.sleep(3600)
        if FAKE.fail_probes[self.device_id] > 0:
            FAKE.fail_probes[self.device_id] -= 1
            raise ProtocolError("bad checksum", device_id=self.device_id)
        return ProbeResult(model="FAKE-1")

    async def health(self) -> Health:
        if self.device_id in FAKE.health_raises:
            raise ZeroDivisionError("driver bug in health")
        return {"read_failure_rate": 0.5, "reads": 10}

    async def close(self) -> None:
        FAKE.closes[self.device_id] += 1
