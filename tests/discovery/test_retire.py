"""A technician retires a device (``edge-agent device retire``): the manager stops using
it for good, by serial number or device id, across replugs and restarts; the list is
kept in the data dir and an unreadable list refuses changes instead of being replaced.
Driven by a ControlledSource as in test_manager.py (no USB bus here)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge_agent.discovery import (
    ControlledSource,
    DeviceManager,
    NetworkDeviceConfig,
    RetiredDevices,
    RetiredFileError,
    UnknownRetirement,
)
from edge_agent.discovery.registered import RegisteredDevices, RegistrationRefused
from edge_agent.profiles import ProfileSet
from tests.discovery.fakes import FAKE
from tests.discovery.test_manager import READER, next_event, profiles, reader, run

__all__ = ["profiles"]  # the fixture, re-used

REPLACEMENT = "fake-reader.sn-12345678-SN2"


def test_a_retired_serial_is_closed_dropped_and_never_used_again(
    profiles: ProfileSet, tmp_path: Path
) -> None:
    source = ControlledSource([reader()])
    retired = RetiredDevices.load(tmp_path)

    async def body(manager: DeviceManager) -> None:
        events = manager.subscribe()
        await manager.wait_for_state(READER, "ready", timeout_s=5)
        with pytest.raises(UnknownRetirement):
            await manager.retire("SN-NEVER-SEEN")
        assert await manager.retire("SN1") == ([READER], True)
        assert (await next_event(events, "device.retired"))["device_id"] == READER
        assert FAKE.closes[READER] == 1
        assert manager.inventory() == []
        assert manager.retired_device_ids() == [READER]
        # Plugged back in, even on another node: not used. The replacement is.
        source.remove(reader())
        source.add(reader(node="/dev/ttyUSB3"))
        source.add(reader(node="/dev/ttyUSB1", serial="SN2"))
        await manager.wait_for_state(REPLACEMENT, "ready", timeout_s=5)
        await asyncio.sleep(0.2)
        assert [d.device_id for d in manager.inventory()] == [REPLACEMENT]
        assert FAKE.opens[READER] == 1
        assert await manager.retire("SN1") == ([READER], False)  # again: no change

    run(profiles, source, body, retired=retired)

    # A restart with the same data dir: still retired, from the first scan on.
    again = ControlledSource([reader(), reader(node="/dev/ttyUSB1", serial="SN2")])

    async def after_restart(manager: DeviceManager) -> None:
        await manager.wait_for_state(REPLACEMENT, "ready", timeout_s=5)
        await asyncio.sleep(0.2)
        assert [d.device_id for d in manager.inventory()] == [REPLACEMENT]
        assert manager.retired_device_ids() == [READER]

    run(profiles, again, after_restart, retired=RetiredDevices.load(tmp_path))


def test_a_network_device_is_retired_by_the_serial_on_its_label(
    profiles: ProfileSet, tmp_path: Path
) -> None:
    old = NetworkDeviceConfig(profile="fake-net-printer", address="192.0.2.20",
                              device_id="window-1-printer", serial="PRN-OLD-0001")  # fmt: skip

    async def body(manager: DeviceManager) -> None:
        await manager.wait_for_state("window-1-printer", "ready", timeout_s=5)
        assert await manager.retire("PRN-OLD-0001") == (["window-1-printer"], True)
        assert manager.inventory() == []

    run(profiles, ControlledSource(), body, network_devices=[old],
        retired=RetiredDevices.load(tmp_path))  # fmt: skip
    # Configured again after a restart (its table not yet removed): still not used.
    again = RetiredDevices.load(tmp_path)
    assert again.matches(device_id="window-1-printer", serial=None)


def test_a_network_replacement_is_registered_started_and_kept(
    profiles: ProfileSet, tmp_path: Path
) -> None:
    old = NetworkDeviceConfig(profile="fake-net-printer", address="192.0.2.20",
                              device_id="window-1-printer", serial="PRN-OLD-0001")  # fmt: skip
    new = NetworkDeviceConfig(profile="fake-net-printer", address="192.0.2.21",
                              device_id="window-1-printer-2", serial="PRN-NEW-0002")  # fmt: skip

    async def body(manager: DeviceManager) -> None:
        await manager.wait_for_state("window-1-printer", "ready", timeout_s=5)
        await manager.retire("PRN-OLD-0001")
        assert await manager.register(new) is True
        await manager.wait_for_state("window-1-printer-2", "ready", timeout_s=5)
        assert await manager.register(new) is False  # again: no change
        for refused, says in (
            (old, "was retired"),  # the retired one cannot come back this way
            (NetworkDeviceConfig(profile="fake-reader", address="192.0.2.22",
                                 device_id="x"), "not a network device profile"),
            (NetworkDeviceConfig(profile="fake-net-printer", address="192.0.2.23",
                                 device_id="window-1-printer-2"), "registered already"),
            (NetworkDeviceConfig(profile="fake-net-printer", address="a b",
                                 device_id="y"), "not a device address"),
        ):  # fmt: skip
            with pytest.raises(RegistrationRefused, match=says):
                await manager.register(refused)
        assert [d.device_id for d in manager.inventory()] == ["window-1-printer-2"]

    run(profiles, ControlledSource(), body, network_devices=[old],
        retired=RetiredDevices.load(tmp_path),
        registered=RegisteredDevices.load(tmp_path))  # fmt: skip
    kept = RegisteredDevices.load(tmp_path)
    assert kept.entries == [new]


def test_force_retires_an_id_the_agent_never_saw(profiles: ProfileSet, tmp_path: Path) -> None:
    async def body(manager: DeviceManager) -> None:
        assert await manager.retire("old-printer-1", force=True) == (["old-printer-1"], True)
        assert manager.retired_device_ids() == ["old-printer-1"]

    run(profiles, ControlledSource(), body, retired=RetiredDevices.load(tmp_path))


def test_bad_keys_and_an_unreadable_list_change_nothing(tmp_path: Path) -> None:
    retired = RetiredDevices.load(tmp_path)
    with pytest.raises(RetiredFileError):
        retired.add("two words", ["x"])
    assert not (tmp_path / "retired-devices.json").exists()
    (tmp_path / "retired-devices.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(RetiredFileError):
        RetiredDevices.load(tmp_path)
    broken = RetiredDevices.load_or_broken(tmp_path)
    assert broken.broken is not None
    assert not broken.matches(device_id=READER, serial="SN1")
    with pytest.raises(RetiredFileError, match="fix or remove it first"):
        broken.add("SN1", [READER])
    assert (tmp_path / "retired-devices.json").read_text(encoding="utf-8") == "{not json"
