"""The SAM driver on the 0400:C35A USB module's endpoint split (bulk 02/06 → 81/85).

No virtual USB host (vhci-hcd, dummy_hcd) is assumed, so libusb never sees a module
here. What runs
for real: the ``SamIdReader`` driver, ``UsbSamTransport`` (request split, reply
reassembly across 64-byte packets, stale-reply drain, deadlines, error mapping) and the
module's card logic, against ``UsbIdCardSimulator``, which enforces the endpoint split
and answers with the serial module's exact bytes. The libusb layer (``LibUsbPipe``)
is thin (one pyusb call per transfer); it is exercised only as far as libusb reporting
that no 0400:C35A module is on the bus.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from edge_agent.devices import (
    DeviceIdentity,
    DeviceTimeout,
    DeviceUnavailable,
    ProtocolError,
    UsbFacts,
)
from edge_agent.devices.id_card_reader.cards import make_card
from edge_agent.devices.id_card_reader.driver import SamIdReader
from edge_agent.devices.id_card_reader.frame import Command, encode_request
from edge_agent.devices.id_card_reader.simulator import Fault
from edge_agent.devices.id_card_reader.simulator_usb import UsbIdCardSimulator
from edge_agent.devices.id_card_reader.text import CardType
from edge_agent.devices.id_card_reader.usb import (
    EP_BODY_IN,
    EP_BODY_OUT,
    EP_HEADER_IN,
    EP_HEADER_OUT,
    UsbPipeError,
    UsbSamTransport,
    open_pipe,
)

T = TypeVar("T")
FAST = {"command_timeout": 0.5, "read_timeout": 0.5, "busy_timeout": 0.3}


@pytest.fixture
def sim() -> Iterator[UsbIdCardSimulator]:
    with UsbIdCardSimulator() as simulator:
        yield simulator


def make_driver(sim: UsbIdCardSimulator, address: str | None = None) -> SamIdReader:
    identity = DeviceIdentity(
        device_id="sam-usb.1",
        profile="sam-usb-c35a",
        kind="id_card_reader",
        address=address or sim.address,
        usb=UsbFacts(vendor_id="0400", product_id="c35a", bus=1, device=7),
    )
    return SamIdReader(identity, settings=FAST)


def run(sim: UsbIdCardSimulator, body: Callable[[SamIdReader], Awaitable[T]]) -> T:
    async def main() -> T:
        async with make_driver(sim) as driver:
            return await body(driver)

    return asyncio.run(main())


def test_the_driver_picks_the_usb_transport_for_usb_addresses(sim: UsbIdCardSimulator) -> None:
    assert isinstance(make_driver(sim)._link, UsbSamTransport)
    assert isinstance(make_driver(sim, "/dev/bus/usb/001/007")._link, UsbSamTransport)


def test_probe_and_read_over_the_endpoint_split(sim: UsbIdCardSimulator) -> None:
    card = make_card(CardType.RESIDENT, long_term=True, fingerprint=True)
    sim.place_card(card)

    async def body(driver: SamIdReader) -> tuple[Any, Any]:
        probe = await driver.probe()
        return probe, await driver.read_card(fingerprint=True)

    probe, read = run(sim, body)
    assert probe.serial == "05.01-20101028-0012345678-1234567890"
    assert read.id_number == card.id_number
    assert read.name == card.name
    assert read.valid_to is None  # 长期
    assert read.fingerprint == card.fingerprint
    assert sim.requests == [
        Command.STATUS.value,
        Command.SAM_ID.value,
        Command.FIND.value,
        Command.SELECT.value,
        Command.READ_WITH_FINGERPRINT.value,
    ]
    outs = [(ep, size) for way, ep, size in sim.transfers if way == "out"]
    # every request: its 7-byte header on 0x02, then its body on 0x06
    assert outs[0::2] == [(EP_HEADER_OUT, 7)] * 5
    assert [ep for ep, _ in outs[1::2]] == [EP_BODY_OUT] * 5
    ins = [(ep, size) for way, ep, size in sim.transfers if way == "in"]
    assert ins.count((EP_HEADER_IN, 7)) == 5
    body_packets = [size for ep, size in ins if ep == EP_BODY_IN]
    # the 2.3 kB fingerprint read came in 64-byte packets and was reassembled
    assert max(body_packets) == 64
    fingerprint = card.fingerprint or b""
    # SW1-3 + data + CHK of: status, SAM id, find, select, read with fingerprint
    bodies = [4, 3 + 16 + 1, 3 + 4 + 1, 3 + 8 + 1, 3 + 6 + 256 + 1024 + len(fingerprint) + 1]
    assert sum(body_packets) == sum(bodies)
    assert len(body_packets) == 4 + -(-bodies[-1] // 64)


def test_misrouted_bytes_stall_the_endpoint(sim: UsbIdCardSimulator) -> None:
    pipe = open_pipe(sim.address, None)
    request = encode_request(Command.STATUS)
    with pytest.raises(UsbPipeError, match="0x02 stalled"):
        pipe.write(EP_HEADER_OUT, request, timeout_ms=100)  # the whole frame on 0x02
    with pytest.raises(UsbPipeError, match="0x06 stalled"):
        pipe.write(EP_BODY_OUT, request[7:], timeout_ms=100)  # a body without a header
    pipe.write(EP_HEADER_OUT, request[:7], timeout_ms=100)
    pipe.write(EP_BODY_OUT, request[7:], timeout_ms=100)
    assert pipe.read(EP_HEADER_IN, 64, timeout_ms=100) == bytes.fromhex("AAAAAA96690004")
    assert pipe.read(EP_BODY_IN, 64, timeout_ms=100) == bytes.fromhex("00009094")


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.BAD_CHECKSUM, ProtocolError),
        (Fault.GARBAGE, ProtocolError),
        (Fault.TRUNCATE, ProtocolError),
        (Fault.BAD_LENGTH, ProtocolError),
        (Fault.HANG, DeviceTimeout),
    ],
)
def test_faults_map_to_the_error_tree_and_the_next_read_works(
    sim: UsbIdCardSimulator, fault: Fault, error: type[Exception]
) -> None:
    card = make_card(CardType.GAT_RESIDENCE)
    sim.place_card(card)

    async def body(driver: SamIdReader) -> str:
        sim.inject(fault, on=Command.READ_TEXT_PHOTO)
        if fault is Fault.BAD_CHECKSUM:  # the driver asks once more: corrupt that too
            sim.inject(fault, on=Command.READ_TEXT_PHOTO)
        with pytest.raises(error):
            await driver.read_card()
        sim.resume()
        return (await driver.read_card()).id_number

    assert run(sim, body) == card.id_number


def test_late_reply_is_drained_before_the_next_request(sim: UsbIdCardSimulator) -> None:
    """A reply that arrives after its request timed out must not answer the next one."""
    sim.place_card(make_card(CardType.RESIDENT))

    async def body(driver: SamIdReader) -> str:
        link = driver._link
        assert isinstance(link, UsbSamTransport)
        sim.usb_write(EP_HEADER_OUT, encode_request(Command.SAM_ID)[:7])
        sim.usb_write(EP_BODY_OUT, encode_request(Command.SAM_ID)[7:])  # reply left unread
        status = await driver.status()
        assert link.stale_bytes == 7 + 16 + 4
        return status

    assert run(sim, body) == "ok"


def test_unplugged_mid_read_is_unavailable_and_reported(sim: UsbIdCardSimulator) -> None:
    sim.place_card(make_card(CardType.RESIDENT))
    events: list[str] = []

    async def main() -> None:
        driver = make_driver(sim)
        driver._on_event = lambda e: events.append(e.name)
        async with driver:
            sim.inject(Fault.UNPLUG, on=Command.READ_TEXT_PHOTO)
            with pytest.raises(DeviceUnavailable):
                await driver.read_card()
            with pytest.raises(DeviceUnavailable):
                await driver.status()
            assert (await driver.health())["connected"] is False
        with pytest.raises(DeviceUnavailable, match="unplugged"):
            await make_driver(sim).open()

    asyncio.run(main())
    assert events == ["device.unplugged"]


def test_libusb_finds_no_module_at_an_address_no_device_has() -> None:
    """The real libusb path: no module at the address, so a clear "cannot open".

    USB assigns device addresses 1-127, never 0, so 001/000 holds no module on any
    machine, with or without a USB bus.
    """
    identity = DeviceIdentity(
        device_id="sam-usb.real",
        profile="sam-usb-c35a",
        kind="id_card_reader",
        address="/dev/bus/usb/001/000",
    )

    async def main() -> None:
        with pytest.raises(DeviceUnavailable, match="cannot open USB module") as info:
            await SamIdReader(identity).open()
        assert "0400:c35a" in str(info.value) or "libusb" in str(info.value)

    asyncio.run(main())


def test_shipped_profile_brings_the_module_up_through_discovery(sim: UsbIdCardSimulator) -> None:
    """udev's facts for 0400:C35A (fed by the test: no udevd here) → profile → ready."""
    from edge_agent.discovery import ControlledSource, DeviceDescription, DeviceManager
    from edge_agent.discovery.matching import Matcher
    from edge_agent.profiles import load_profiles

    sim.place_card(make_card(CardType.RESIDENT))
    module = DeviceDescription(
        subsystem="usb",
        device_node=sim.address,  # a real one is /dev/bus/usb/BBB/DDD
        sys_path="/sys/devices/pci0000:00/0000:00:14.0/usb1/1-4",
        vendor_id="0400",
        product_id="c35a",
        port_path="pci-0000:00:14.0-usb-0:4",
        bus_number=1,
        device_number=7,
    )

    async def main() -> None:
        profiles = load_profiles(log_problems=False)
        async with DeviceManager(
            profiles, ControlledSource([module]), debounce_s=0.02, reconcile_interval_s=3600
        ) as devices:
            found = Matcher(profiles).match(module)
            assert found is not None
            assert found.profile.id == "sam-usb-c35a"
            state = await devices.wait_for_state(found.device_id, "ready", "error", timeout_s=10)
            assert state == "ready"
            driver = devices.driver(found.device_id)
            assert isinstance(driver, SamIdReader)
            card = await driver.read_card()
            assert card.card_type is CardType.RESIDENT

    asyncio.run(main())


def test_one_bad_checksum_is_resent_over_usb_too(sim: UsbIdCardSimulator) -> None:
    card = make_card(CardType.RESIDENT)
    sim.place_card(card)
    sim.inject(Fault.BAD_CHECKSUM, on=Command.READ_TEXT_PHOTO)

    async def body(driver: SamIdReader) -> tuple[str, Any]:
        return (await driver.read_card()).id_number, (await driver.health())["resends"]

    assert run(sim, body) == (card.id_number, 1)


def test_a_module_plugged_back_in_is_reopened_by_the_next_operation(
    sim: UsbIdCardSimulator,
) -> None:
    card = make_card(CardType.RESIDENT)
    sim.place_card(card)

    async def body(driver: SamIdReader) -> tuple[str, Any]:
        await driver.read_card()
        sim.unplug()
        with pytest.raises(DeviceUnavailable):
            await driver.read_card()
        with UsbIdCardSimulator(name=sim.name) as back:  # the same module, back on the bus
            back.place_card(card)
            got = await driver.read_card()
            return got.id_number, (await driver.health())["reopens"]

    assert run(sim, body) == (card.id_number, 1)
