"""UdevSource against the real udev netlink monitor of this machine.

This machine has no USB bus and no udevd: pyudev's Context works and a netlink monitor
starts, but no device appears. So this only checks that the source starts, enumerates
without crashing and stops cleanly; hot-plug behaviour is tested with ControlledSource.
"""

from __future__ import annotations

import asyncio

from edge_agent.discovery import DeviceManager, SourceEvent, UdevSource
from edge_agent.profiles import ProfileSet


def test_udev_source_starts_enumerates_and_stops() -> None:
    async def main() -> None:
        received: list[SourceEvent] = []
        source = UdevSource()
        await source.start(received.append)
        assert source.running
        devices = await source.scan()
        assert isinstance(devices, list)  # no USB devices expected on this machine
        await source.stop()
        assert not source.running
        await source.stop()  # twice is fine

    asyncio.run(asyncio.wait_for(main(), 20))


def test_device_manager_runs_on_udev() -> None:
    async def main() -> None:
        async with DeviceManager(ProfileSet(), UdevSource()) as manager:
            assert manager.inventory() == []

    asyncio.run(asyncio.wait_for(main(), 20))
