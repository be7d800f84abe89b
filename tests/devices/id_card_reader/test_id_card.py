"""The real SAM_A driver against the simulator over real pseudo-terminals.

Every test opens the pty slave with pyserial-asyncio-fast exactly as a USB-serial port
would be opened; the simulator answers with the module's bytes and injects faults.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeVar

import pytest
import serial

from edge_agent.devices import (
    DeviceBusy,
    DeviceEvent,
    DeviceIdentity,
    DeviceRefused,
    DeviceTimeout,
    DeviceUnavailable,
    ProtocolError,
    driver_class,
)
from edge_agent.devices.id_card_reader.cards import make_card
from edge_agent.devices.id_card_reader.driver import SamIdReader
from edge_agent.devices.id_card_reader.frame import (
    Command,
    encode_frame,
    encode_request,
    parse_response,
)
from edge_agent.devices.id_card_reader.simulator import Fault, IdCardSimulator
from edge_agent.devices.id_card_reader.text import CardType, IdCard
from govedge_wire.pii import is_valid_id_number, mask_id_number

T = TypeVar("T")
FAST = {"command_timeout": 0.5, "read_timeout": 0.5, "busy_timeout": 0.3}


@pytest.fixture
def sim() -> Iterator[IdCardSimulator]:
    with IdCardSimulator() as simulator:
        yield simulator


def make_driver(
    sim: IdCardSimulator,
    *,
    events: list[DeviceEvent] | None = None,
    settings: Mapping[str, Any] | None = None,
    device_id: str = "idr-1",
) -> SamIdReader:
    identity = DeviceIdentity(
        device_id=device_id, profile="sam-a-serial", kind="id_card_reader", address=sim.device_path
    )
    return SamIdReader(
        identity,
        settings=dict(FAST, **(settings or {})),
        on_event=events.append if events is not None else None,
    )


def run(sim: IdCardSimulator, body: Callable[[SamIdReader], Awaitable[T]], **kw: Any) -> T:
    """Open a driver on ``sim``, run ``body`` with it, close it; all in one event loop."""

    async def main() -> T:
        async with make_driver(sim, **kw) as driver:
            return await body(driver)

    return asyncio.run(main())


def test_registered_under_its_profile_name() -> None:
    assert driver_class("sam_id_reader") is SamIdReader


def test_probe_reads_status_and_sam_id(sim: IdCardSimulator) -> None:
    result = run(sim, lambda d: d.probe())
    assert result.serial == "05.01-20101028-0012345678-1234567890"
    assert result.details["sam_status"] == "ok"
    assert sim.requests == [Command.STATUS.value, Command.SAM_ID.value]


def test_probe_fails_when_self_test_failed() -> None:
    with IdCardSimulator(self_test_ok=False) as sim:
        with pytest.raises(Exception, match="self_test_failed") as info:
            run(sim, lambda d: d.probe())
        assert info.value.__class__.__name__ == "SamStatusError"


@pytest.mark.parametrize("card_type", list(CardType))
def test_reads_every_card_type(sim: IdCardSimulator, card_type: CardType) -> None:
    expected = make_card(card_type, seed=11)
    sim.place_card(expected)
    card = run(sim, lambda d: d.read_card())
    assert card == expected
    assert card.card_type is card_type
    assert len(card.photo) == 1024
    assert card.fingerprint is None
    if card_type is not CardType.FOREIGNER_2017:
        assert is_valid_id_number(card.id_number)
    assert sim.requests == [Command.FIND.value, Command.SELECT.value, b"\x30\x01"]


def test_long_term_card(sim: IdCardSimulator) -> None:
    sim.place_card(make_card(CardType.RESIDENT, long_term=True))
    card = run(sim, lambda d: d.read_card())
    assert card.valid_to is None
    assert card.long_term
    assert card.masked()["valid_to"] == "long-term"


@pytest.mark.parametrize("with_prints", [False, True])
def test_read_with_fingerprint(sim: IdCardSimulator, with_prints: bool) -> None:
    sim.place_card(make_card(CardType.RESIDENT, fingerprint=with_prints))
    card = run(sim, lambda d: d.read_card(fingerprint=True))
    assert sim.requests[-1] == Command.READ_WITH_FINGERPRINT.value
    if with_prints:
        assert card.fingerprint is not None
        assert len(card.fingerprint) == 1024
    else:
        assert card.fingerprint is None


def test_extra_address(sim: IdCardSimulator) -> None:
    sim.place_card(make_card(extra_addresses=("浙江省杭州市滨江区江南大道1号",)))
    card = run(sim, lambda d: d.read_card(extra_address=True))
    assert card.extra_addresses == ("浙江省杭州市滨江区江南大道1号",)
    assert card.extra_address == "浙江省杭州市滨江区江南大道1号"
    sim.place_card(make_card())
    assert run(sim, lambda d: d.read_extra_addresses()) == ()  # SW3 91: nothing there
    assert run(sim, lambda d: d.read_extra_address()) is None


def test_management_info(sim: IdCardSimulator) -> None:
    sim.place_card(make_card())
    assert len(run(sim, lambda d: d.read_management_info())) == 28


def test_no_card_is_refused_with_a_hint(sim: IdCardSimulator) -> None:
    events: list[DeviceEvent] = []

    async def body(driver: SamIdReader) -> dict[str, Any]:
        with pytest.raises(DeviceRefused) as info:
            await driver.read_card()
        assert info.value.code == "no_card"
        assert info.value.hint == "place the ID card on the reader"
        return dict(await driver.health())

    health = run(sim, body, events=events)
    assert health["no_card"] == 1
    assert health["reads_failed"] == 1
    assert sim.requests == [Command.FIND.value, Command.FIND.value]  # one retry, as vendors do
    assert events == []


def test_refuses_a_second_read_until_the_card_is_lifted() -> None:
    with IdCardSimulator(refuse_find_after_read=True) as sim:
        sim.place_card(make_card())

        async def body(driver: SamIdReader) -> None:
            await driver.read_card()
            with pytest.raises(DeviceRefused, match="find card failed"):
                await driver.read_card()
            sim.remove_card()
            sim.place_card(make_card())
            await driver.read_card()

        run(sim, body)


def test_event_and_logs_hold_masked_data_only(
    sim: IdCardSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    card = make_card(CardType.RESIDENT)
    sim.place_card(card)
    events: list[DeviceEvent] = []
    run(sim, lambda d: d.read_card(), events=events)
    assert [e.name for e in events] == ["card.read"]
    data = events[0].data
    assert data["id_number"] == mask_id_number(card.id_number)
    flat = repr(events) + caplog.text
    for secret in (card.id_number, card.name, card.address or "?", card.photo[:8].hex()):
        assert secret not in flat


def test_noise_before_a_response_is_skipped(sim: IdCardSimulator) -> None:
    sim.place_card(make_card())
    rng = random.Random(42)
    noise = bytes(rng.randrange(256) for _ in range(200)).replace(b"\xaa", b"\x00")
    sim.inject(Fault.GARBAGE, on=Command.READ_TEXT_PHOTO, data=noise)

    async def body(driver: SamIdReader) -> dict[str, Any]:
        await driver.read_card()
        return dict(await driver.health())

    health = run(sim, body)
    assert health["reads_ok"] == 1
    assert health["noise_bytes"] == len(noise)


def test_bad_checksum_twice_is_a_protocol_error_and_the_next_read_works(
    sim: IdCardSimulator,
) -> None:
    sim.place_card(make_card())
    sim.inject(Fault.BAD_CHECKSUM, on=Command.READ_TEXT_PHOTO)
    sim.inject(Fault.BAD_CHECKSUM, on=Command.READ_TEXT_PHOTO)

    async def body(driver: SamIdReader) -> dict[str, Any]:
        with pytest.raises(ProtocolError, match="checksum twice"):
            await driver.read_card()
        await driver.read_card()
        return dict(await driver.health())

    health = run(sim, body)
    assert (health["protocol_errors"], health["reads_ok"], health["reads_failed"]) == (1, 1, 1)


def test_wrong_length_is_a_protocol_error(sim: IdCardSimulator) -> None:
    sim.place_card(make_card())
    sim.inject(Fault.BAD_LENGTH, on=Command.SELECT)

    async def body(driver: SamIdReader) -> None:
        with pytest.raises(ProtocolError, match="length"):
            await driver.read_card()
        await driver.read_card()

    run(sim, body)


def test_truncated_frame_is_a_protocol_error(sim: IdCardSimulator) -> None:
    sim.place_card(make_card())
    sim.inject(Fault.TRUNCATE, on=Command.READ_TEXT_PHOTO, data=bytes(600))

    async def body(driver: SamIdReader) -> None:
        with pytest.raises(ProtocolError, match="truncated frame: 600 bytes"):
            await driver.read_card()
        await driver.read_card()

    run(sim, body)


def test_device_stops_answering_mid_read(sim: IdCardSimulator) -> None:
    sim.place_card(make_card())
    sim.inject(Fault.HANG, on=Command.READ_TEXT_PHOTO)

    async def body(driver: SamIdReader) -> dict[str, Any]:
        with pytest.raises(DeviceTimeout):
            await driver.read_card()
        sim.resume()
        await driver.read_card()
        return dict(await driver.health())

    health = run(sim, body)
    assert health["timeouts"] == 1
    assert health["reads_ok"] == 1


def test_unplugged_mid_read(sim: IdCardSimulator) -> None:
    sim.place_card(make_card())
    sim.inject(Fault.UNPLUG, on=Command.READ_TEXT_PHOTO)
    events: list[DeviceEvent] = []

    async def body(driver: SamIdReader) -> dict[str, Any]:
        with pytest.raises(DeviceUnavailable):
            await driver.read_card()
        with pytest.raises(DeviceUnavailable):
            await driver.status()
        return dict(await driver.health())

    health = run(sim, body, events=events)
    assert health["connected"] is False
    assert [e.name for e in events] == ["device.unplugged"]  # reported once
    assert sim.unplugged


def test_missing_port_is_unavailable() -> None:
    identity = DeviceIdentity(
        device_id="idr-x", profile="sam-a-serial", kind="id_card_reader", address="/dev/ttyNOPE9"
    )

    async def main() -> None:
        with pytest.raises(DeviceUnavailable, match="cannot open"):
            await SamIdReader(identity).open()

    asyncio.run(main())


def test_second_caller_gets_busy_while_a_read_hangs(sim: IdCardSimulator) -> None:
    sim.place_card(make_card())
    sim.inject(Fault.HANG, on=Command.READ_TEXT_PHOTO)

    async def body(driver: SamIdReader) -> None:
        results = await asyncio.gather(driver.read_card(), driver.status(), return_exceptions=True)
        assert isinstance(results[0], DeviceTimeout)
        assert isinstance(results[1], DeviceBusy)

    run(sim, body, settings={"read_timeout": 0.8, "busy_timeout": 0.2})


def test_two_readers_at_once() -> None:
    with IdCardSimulator() as sim_a, IdCardSimulator() as sim_b:
        card_a = make_card(CardType.RESIDENT, seed=1)
        card_b = make_card(CardType.FOREIGNER_2023, seed=2)
        sim_a.place_card(card_a)
        sim_b.place_card(card_b)

        async def main() -> tuple[list[IdCard], list[IdCard]]:
            async with (
                make_driver(sim_a, device_id="a") as a,
                make_driver(sim_b, device_id="b") as b,
            ):

                async def many(driver: SamIdReader) -> list[IdCard]:
                    return [await driver.read_card() for _ in range(5)]

                return await asyncio.gather(many(a), many(b))

        got_a, got_b = asyncio.run(main())
        assert got_a == [card_a] * 5
        assert got_b == [card_b] * 5


def test_bad_settings_are_rejected_at_construction(sim: IdCardSimulator) -> None:
    with pytest.raises(ValueError, match="baudrate"):
        make_driver(sim, settings={"baudrate": 1234})
    with pytest.raises(ValueError, match="unknown"):
        make_driver(sim, settings={"read_timout": 1})


def test_close_twice_and_after_unplug(sim: IdCardSimulator) -> None:
    async def main() -> None:
        driver = make_driver(sim)
        await driver.open()
        sim.unplug()
        await driver.close()
        await driver.close()

    asyncio.run(main())


# ---------------------------------------------------------------- raw simulator bytes


def raw_exchange(
    sim: IdCardSimulator, request: bytes, *, expect: int = 11, baud: int = 115200
) -> bytes:
    """Send raw bytes to the simulator through pyserial and read ``expect`` bytes back."""
    with serial.Serial(sim.device_path, baud, timeout=1.0) as port:
        port.write(request)
        return port.read(expect)


def test_strict_simulator_answers_10_to_a_bad_checksum(sim: IdCardSimulator) -> None:
    reply = raw_exchange(sim, bytes.fromhex("AAAAAA9669 0003 2001 21"))  # documented bad sample
    assert parse_response(reply).sw3 == 0x10


def test_strict_simulator_answers_11_to_a_bad_length(sim: IdCardSimulator) -> None:
    reply = raw_exchange(sim, bytes.fromhex("AAAAAA9669 7000 11FF") + bytes(8))
    assert parse_response(reply).sw3 == 0x11


def test_lenient_simulator_serves_a_bad_checksum() -> None:
    with IdCardSimulator(strict=False) as sim:
        reply = raw_exchange(sim, bytes.fromhex("AAAAAA9669 0003 11FF 00"))
        assert parse_response(reply).sw3 == 0x90


def test_unknown_command_is_21(sim: IdCardSimulator) -> None:
    assert parse_response(raw_exchange(sim, encode_request(b"\x77\x01"))).sw3 == 0x21


def test_read_without_select_is_41(sim: IdCardSimulator) -> None:
    sim.place_card(make_card())
    assert parse_response(raw_exchange(sim, encode_request(Command.READ_TEXT_PHOTO))).sw3 == 0x41


def test_baud_switch_and_rf_frame_size(sim: IdCardSimulator) -> None:
    assert parse_response(raw_exchange(sim, encode_request(b"\x60\x04"))).sw3 == 0x90
    assert sim.baudrate == 9600
    assert raw_exchange(sim, encode_request(b"\x60\x07")) == b""  # still at 115200: ignored
    assert parse_response(raw_exchange(sim, encode_request(b"\x60\x07"), baud=9600)).sw3 == 0x21
    reply = raw_exchange(sim, bytes.fromhex("AAAAAA9669 0004 61FF50 CA"), baud=9600)
    assert parse_response(reply).sw3 == 0x90
    assert sim.max_rf_frame == 0x50


def test_read_frame_has_the_documented_layout(sim: IdCardSimulator) -> None:
    sim.place_card(make_card())
    with serial.Serial(sim.device_path, 115200, timeout=1.0) as port:
        for command, size in ((Command.FIND, 15), (Command.SELECT, 19)):
            port.write(encode_request(command))
            assert len(port.read(size)) == size
        port.write(encode_request(Command.READ_TEXT_PHOTO))
        frame = port.read(1295)
    assert len(frame) == 1295
    assert frame[:14] == bytes.fromhex("aaaaaa9669050800009001000400")
    assert encode_frame(frame[7:-1]) == frame
