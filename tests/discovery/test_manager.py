"""DeviceManager lifecycle, driven by a ControlledSource.

This machine has no USB bus and no udevd, so hot-plug events come from a source the test
controls; they go through the same matching, debouncing and driver lifecycle code as
udev events do. The device itself is played by the in-test ``FakeDriver`` (tests/discovery/
fakes.py); the real drivers are tested against their simulators by their own tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from edge_agent.devices import DeviceUnavailable
from edge_agent.discovery import (
    ControlledSource,
    DeviceDescription,
    DeviceManager,
    NetworkDeviceConfig,
    Subscription,
)
from edge_agent.profiles import ProfileSet, load_profiles
from tests.discovery.fakes import FAKE, FAKE_DRIVER

READER = "fake-reader.sn-12345678-SN1"
PROFILES = f"""\
id: fake-reader
name: Fake reader
kind: id_card_reader
driver: {FAKE_DRIVER}
match:
  - usb:
      subsystem: tty
      vendor_id: "1234"
      product_id: "5678"
settings:
  baud_rate: 115200
health:
  - metric: read_failure_rate
    warn: 0.05
    crit: 0.2
"""
NETWORK_PROFILE = f"""\
id: fake-net-printer
name: Fake network printer
kind: ticket_printer
driver: {FAKE_DRIVER}
match:
  - network:
      default_port: 9100
settings:
  encoding: gb18030
"""


@pytest.fixture
def profiles(tmp_path: Path) -> ProfileSet:
    (tmp_path / "reader.yaml").write_text(PROFILES, encoding="utf-8")
    (tmp_path / "net.yaml").write_text(NETWORK_PROFILE, encoding="utf-8")
    loaded = load_profiles(tmp_path, driver_names=[FAKE_DRIVER])
    assert loaded.ok
    return loaded


def reader(node: str = "/dev/ttyUSB0", serial: str = "SN1") -> DeviceDescription:
    return DeviceDescription(
        subsystem="tty",
        device_node=node,
        sys_path=f"/sys/class/tty/{node.rsplit('/', 1)[-1]}",
        vendor_id="1234",
        product_id="5678",
        serial=serial,
    )


def run(
    profiles: ProfileSet,
    source: ControlledSource,
    body: Callable[[DeviceManager], Awaitable[None]],
    **options: Any,
) -> None:
    """Run ``body`` inside a manager with fast test timings, under an overall deadline."""
    settings: dict[str, Any] = {
        "debounce_s": 0.05,
        "retry_base_s": 0.02,
        "retry_cap_s": 0.1,
        "probe_timeout_s": 1.0,
        "reconcile_interval_s": 3600.0,
    } | options

    async def main() -> None:
        async with asyncio.timeout(20):
            async with DeviceManager(profiles, source, **settings) as manager:
                await body(manager)

    asyncio.run(main())


async def next_event(events: Subscription, name: str) -> dict[str, Any]:
    while True:
        event = await events.get(timeout_s=5)
        if event.name == name:
            return {"device_id": event.device_id, **event.data}


def test_devices_present_at_start_are_enumerated(profiles: ProfileSet) -> None:
    async def body(manager: DeviceManager) -> None:
        await manager.wait_for_state(READER, "ready", timeout_s=5)
        [info] = manager.inventory()
        assert (info.device_id, info.kind, info.state, info.model) == (
            READER,
            "id_card_reader",
            "ready",
            "FAKE-1",
        )
        assert FAKE.addresses[READER] == "/dev/ttyUSB0"
        assert FAKE.settings[READER] == {"baud_rate": 115200}

    run(profiles, ControlledSource([reader()]), body)


def test_add_makes_the_device_ready(profiles: ProfileSet) -> None:
    source = ControlledSource()

    async def body(manager: DeviceManager) -> None:
        events = manager.subscribe()
        assert manager.inventory() == []
        started = time.monotonic()
        source.add(reader())
        await manager.wait_for_state(READER, "ready", timeout_s=5)
        print(f"plug-in to ready: {time.monotonic() - started:.3f} s (debounce 0.05 s)")
        assert (await next_event(events, "device.ready"))["device_id"] == READER
        assert manager.driver(READER).device_id == READER

    run(profiles, source, body)


def test_a_burst_starts_one_driver(profiles: ProfileSet) -> None:
    source = ControlledSource()

    async def body(manager: DeviceManager) -> None:
        source.add(reader())
        source.remove(reader())
        source.add(reader())
        source.add(reader())
        await manager.wait_for_state(READER, "ready", timeout_s=5)
        await asyncio.sleep(0.2)  # past the debounce window: nothing else may start
        assert FAKE.opens[READER] == 1
        assert FAKE.closes[READER] == 0

    run(profiles, source, body)


def test_remove_closes_marks_offline_and_emits(profiles: ProfileSet) -> None:
    source = ControlledSource([reader()])

    async def body(manager: DeviceManager) -> None:
        events = manager.subscribe()
        await manager.wait_for_state(READER, "ready", timeout_s=5)
        source.remove(reader())
        await manager.wait_for_state(READER, "offline", timeout_s=5)
        unplugged = await next_event(events, "device.unplugged")
        assert unplugged == {
            "device_id": READER,
            "profile": "fake-reader",
            "kind": "id_card_reader",
        }
        assert FAKE.closes[READER] == 1
        with pytest.raises(DeviceUnavailable):
            manager.driver(READER)
        assert [d.state for d in manager.inventory()] == ["offline"]

    run(profiles, source, body)


def test_replug_on_another_node_resumes_the_same_device(profiles: ProfileSet) -> None:
    source = ControlledSource([reader("/dev/ttyUSB0")])

    async def body(manager: DeviceManager) -> None:
        await manager.wait_for_state(READER, "ready", timeout_s=5)
        source.remove(reader("/dev/ttyUSB0"))
        await manager.wait_for_state(READER, "offline", timeout_s=5)
        source.add(reader("/dev/ttyUSB1"))
        await manager.wait_for_state(READER, "ready", timeout_s=5)
        assert [d.device_id for d in manager.inventory()] == [READER]
        assert FAKE.addresses[READER] == "/dev/ttyUSB1"
        assert FAKE.opens[READER] == 2

    run(profiles, source, body)


def test_probe_failure_is_an_error_and_is_retried(profiles: ProfileSet) -> None:
    FAKE.fail_probes[READER] = 2
    source = ControlledSource()

    async def body(manager: DeviceManager) -> None:
        events = manager.subscribe()
        source.add(reader())
        failed = await next_event(events, "device.error")
        assert (failed["reason"], failed["attempt"]) == ("protocol", 1)
        await manager.wait_for_state(READER, "ready", timeout_s=5)
        assert FAKE.probes[READER] == 3
        assert FAKE.closes[READER] == 2  # each failed attempt released its transport
        assert manager.errors()["probe.protocol"] == 2

    run(profiles, source, body)


def test_hung_probe_times_out_into_error(profiles: ProfileSet) -> None:
    FAKE.hang_probe.add(READER)

    async def body(manager: DeviceManager) -> None:
        await manager.wait_for_state(READER, "error", timeout_s=5)
        assert manager.errors()["probe.timeout"] >= 1

    run(profiles, ControlledSource([reader()]), body, probe_timeout_s=0.05, retry_base_s=5.0)


def test_driver_bugs_in_open_and_health_do_not_crash_the_manager(profiles: ProfileSet) -> None:
    broken = "fake-reader.sn-12345678-SN2"
    FAKE.open_raises.add(broken)
    FAKE.health_raises.add(READER)
    source = ControlledSource([reader(), reader("/dev/ttyUSB1", serial="SN2")])

    async def body(manager: DeviceManager) -> None:
        await manager.wait_for_state(READER, "ready", timeout_s=5)
        await manager.wait_for_state(broken, "error", timeout_s=5)
        assert await manager.health() == {READER: {"health_error": "unexpected"}}
        FAKE.health_raises.clear()
        assert await manager.health() == {
            READER: {"read_failure_rate": 0.5, "reads": 10, "level": "crit"}
        }
        errors = manager.errors()
        assert errors["open.unexpected"] >= 1
        assert errors["health.unexpected"] == 1
        states = {d.device_id: (d.state, d.health) for d in manager.inventory()}
        assert states[READER] == ("ready", {"read_failure_rate": 0.5, "reads": 10, "level": "crit"})
        assert states[broken][0] == "error"

    run(profiles, source, body)


def test_reconcile_finds_a_device_whose_events_were_lost(profiles: ProfileSet) -> None:
    source = ControlledSource()

    async def body(manager: DeviceManager) -> None:
        source.add(reader(), emit=False)  # udev dropped the add event
        await manager.wait_for_state(READER, "ready", timeout_s=5)
        source.remove(reader(), emit=False)  # ... and later the remove event
        await manager.wait_for_state(READER, "offline", timeout_s=5)
        errors = manager.errors()
        assert errors["reconcile.missed_add"] == 1
        assert errors["reconcile.missed_remove"] == 1

    run(profiles, source, body, reconcile_interval_s=0.05)


def test_network_devices_come_from_config(profiles: ProfileSet) -> None:
    printer = NetworkDeviceConfig(
        profile="fake-net-printer",
        address="192.0.2.10",
        device_id="window-3-printer",
        settings={"cut": "full"},
    )
    bad = NetworkDeviceConfig(profile="fake-reader", address="192.0.2.11", device_id="bad")

    async def body(manager: DeviceManager) -> None:
        await manager.wait_for_state("window-3-printer", "ready", timeout_s=5)
        assert FAKE.addresses["window-3-printer"] == "192.0.2.10:9100"
        assert FAKE.settings["window-3-printer"] == {"encoding": "gb18030", "cut": "full"}
        await manager.reconcile()  # network devices are not in the scan; they stay
        assert manager.state("window-3-printer") == "ready"
        assert manager.state("bad") is None
        assert manager.errors()["config.bad_network_device"] == 1

    run(profiles, ControlledSource(), body, network_devices=[printer, bad])


def test_unknown_devices_are_ignored(profiles: ProfileSet) -> None:
    other = DeviceDescription(
        subsystem="tty", device_node="/dev/ttyACM0", vendor_id="2341", product_id="0043", serial="X"
    )
    source = ControlledSource([other])

    async def body(manager: DeviceManager) -> None:
        source.add(reader())
        await manager.wait_for_state(READER, "ready", timeout_s=5)
        assert [d.device_id for d in manager.inventory()] == [READER]

    run(profiles, source, body)


def test_leaving_the_block_closes_every_driver(profiles: ProfileSet) -> None:
    async def body(manager: DeviceManager) -> None:
        await manager.wait_for_state(READER, "ready", timeout_s=5)

    run(profiles, ControlledSource([reader()]), body)
    assert FAKE.closes[READER] == 1


def test_bad_local_settings_put_the_device_in_error_naming_their_source(
    profiles: ProfileSet, caplog: pytest.LogCaptureFixture
) -> None:
    printer = NetworkDeviceConfig(
        profile="fake-net-printer",
        address="192.0.2.10",
        device_id="window-4-printer",
        settings={"cut": "sideways"},
    )

    async def body(manager: DeviceManager) -> None:
        events = manager.subscribe()
        await manager.wait_for_state("window-4-printer", "error", timeout_s=5)
        error = await next_event(events, "device.error")
        assert error["reason"] == "bad_settings"
        assert FAKE.opens["window-4-printer"] == 0  # rejected before any I/O
        assert manager.errors()["create.bad_settings"] >= 1

    with caplog.at_level("WARNING"):
        run(profiles, ControlledSource(), body, network_devices=[printer])
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "net.yaml + agent config devices['window-4-printer'].settings" in logged
    assert "settings.cut" in logged
