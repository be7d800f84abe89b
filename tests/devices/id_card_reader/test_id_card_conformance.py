"""The SAM_A driver and simulator held to the protocol's own bytes, and its rough edges.

Both the driver and the simulator build their frames with ``frame``/``text``, so
a misreading there would pass every round trip. The frames here are therefore written
out as literals from the protocol tables (docs/devices/id-card-reader.md), with
checksums computed by hand (the XOR of every byte from the length field on), and
each side is checked against them separately: the simulator's answers byte for byte
over a real pseudo-terminal, the driver's parsing of the literal payloads.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import serial

from edge_agent.devices import (
    DeviceEvent,
    DeviceIdentity,
    DeviceRefused,
    DeviceTimeout,
    DeviceUnavailable,
    ProtocolError,
)
from edge_agent.devices.id_card_reader.cards import make_card
from edge_agent.devices.id_card_reader.driver import SamIdReader, format_sam_id
from edge_agent.devices.id_card_reader.frame import (
    Command,
    FrameChecksumError,
    SamStatusError,
    parse_response,
)
from edge_agent.devices.id_card_reader.simulator import Fault, IdCardSimulator
from edge_agent.devices.id_card_reader.text import (
    CardType,
    IdCard,
    decode_extra_addresses,
    parse_text_block,
)
from edge_agent.profiles import profiles_check_main

T = TypeVar("T")
FAST = {"command_timeout": 0.5, "read_timeout": 0.5, "busy_timeout": 0.3}

# Request frames exactly as the protocol table lists them.
STATUS = bytes.fromhex("AAAAAA9669 0003 11FF ED")
FIND = bytes.fromhex("AAAAAA9669 0003 2001 22")
SELECT = bytes.fromhex("AAAAAA9669 0003 2002 21")
READ_EXTRA_ADDRESS = bytes.fromhex("AAAAAA9669 0003 3003 30")

PROFILE = """\
id: family-01-reader
name: A reader whose module resets with 01 FF
kind: id_card_reader
driver: sam_id_reader
match:
  - usb:
      subsystem: usb
      vendor_id: "0400"
      product_id: "c35a"
settings:
  reset_command: RESET
"""

ADDRESS_1 = "浙江省杭州市滨江区江南大道1号"
ADDRESS_2 = "浙江省宁波市鄞州区天童南路8号"


def slot(address: str) -> bytes:
    """One 70-byte 追加住址 slot: UCS-2 little-endian, padded with spaces (20 00)."""
    raw = address.encode("utf-16-le")
    assert len(raw) <= 70
    return raw + b"\x20\x00" * ((70 - len(raw)) // 2)


def frame(body: bytes) -> bytes:
    """A frame by the table's rule: preamble, BE length of body + CHK, body, XOR."""
    length = (len(body) + 1).to_bytes(2, "big")
    chk = 0
    for byte in length + body:
        chk ^= byte
    return bytes.fromhex("AAAAAA9669") + length + body + bytes([chk])


@pytest.fixture
def sim() -> Iterator[IdCardSimulator]:
    with IdCardSimulator() as simulator:
        yield simulator


def run(address: str, body: Callable[[SamIdReader], Awaitable[T]], **settings: Any) -> T:
    identity = DeviceIdentity(
        device_id="idr-c", profile="sam-a-serial", kind="id_card_reader", address=address
    )

    async def main() -> T:
        async with SamIdReader(identity, settings=dict(FAST, **settings)) as driver:
            return await body(driver)

    return asyncio.run(main())


def exchange(port: serial.Serial, request: bytes, size: int) -> bytes:
    port.write(request)
    return port.read(size)


# ---------------------------------------------------------------- 追加住址 (30 03)


def test_simulator_answers_the_documented_bytes_for_two_extra_addresses(
    sim: IdCardSimulator,
) -> None:
    sim.place_card(make_card(extra_addresses=(ADDRESS_1, ADDRESS_2)))
    expected = frame(b"\x00\x00\x90" + slot(ADDRESS_1) + slot(ADDRESS_2))
    assert expected[5:10] == bytes.fromhex("0090 000090")  # 3 + 2 * 70 + 1 bytes
    with serial.Serial(sim.device_path, 115200, timeout=1.0) as port:
        assert exchange(port, STATUS, 11) == bytes.fromhex("AAAAAA9669 0004 000090 94")
        assert exchange(port, FIND, 15) == bytes.fromhex("AAAAAA9669 0008 00009F 00000000 97")
        assert exchange(port, SELECT, 19) == bytes.fromhex(
            "AAAAAA9669 000C 000090 0000000000000000 9C"
        )
        assert exchange(port, READ_EXTRA_ADDRESS, len(expected)) == expected


def test_driver_splits_the_documented_slots_into_a_list() -> None:
    payload = slot(ADDRESS_1) + slot(ADDRESS_2) + b"\x20\x00" * 35  # third slot blank
    assert decode_extra_addresses(payload) == (ADDRESS_1, ADDRESS_2)
    assert parse_response(frame(b"\x00\x00\x90" + payload)).data == payload


def test_read_card_returns_each_extra_address_and_the_joined_string(sim: IdCardSimulator) -> None:
    sim.place_card(make_card(extra_addresses=(ADDRESS_1, ADDRESS_2)))
    card = run(sim.device_path, lambda d: d.read_card(extra_address=True))
    assert card.extra_addresses == (ADDRESS_1, ADDRESS_2)
    assert card.extra_address == f"{ADDRESS_1}\uff1b{ADDRESS_2}"  # the old field, separable
    assert ADDRESS_1 not in repr(card)


# ---------------------------------------------------------------- reset byte per family


def test_reset_command_is_a_setting_for_modules_that_reset_with_01() -> None:
    with IdCardSimulator(reset_command=b"\x01\xff") as sim:
        with serial.Serial(sim.device_path, 115200, timeout=1.0) as port:
            # 10 FF is no command on this family (21); 01 FF, checksum FD, resets (90).
            assert exchange(port, bytes.fromhex("AAAAAA9669 0003 10FF EC"), 11) == bytes.fromhex(
                "AAAAAA9669 0004 000021 25"
            )
            assert exchange(port, bytes.fromhex("AAAAAA9669 0003 01FF FD"), 11) == bytes.fromhex(
                "AAAAAA9669 0004 000090 94"
            )
        with pytest.raises(SamStatusError, match="command error"):
            run(sim.device_path, lambda d: d.reset())  # the default, 10 FF
        sim.requests.clear()
        run(sim.device_path, lambda d: d.reset(), reset_command="01 ff")
        assert sim.requests == [b"\x01\xff"]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("01", "1 is not a command"),  # YAML reads 01 as the number 1
        ('"1"', "'1' is not hex"),
        ('"01"', "'01' is 1 bytes"),
        ("11 FF", "'11 FF' is the module's STATUS command, not a reset"),
    ],
)
def test_profiles_check_reports_a_bad_reset_command(tmp_path: Path, value: str, words: str) -> None:
    text = PROFILE.replace("RESET", value)
    (tmp_path / "reader.yaml").write_text(text, encoding="utf-8")
    out = io.StringIO()
    assert profiles_check_main(tmp_path, out=out) == 1
    [line] = out.getvalue().splitlines()
    assert line.startswith(f"{tmp_path / 'reader.yaml'}:11: settings.reset_command: ")
    assert words in line
    assert "two hex bytes" in line or "not a reset" in line


def test_profiles_check_accepts_01_ff(tmp_path: Path) -> None:
    (tmp_path / "reader.yaml").write_text(PROFILE.replace("RESET", '"01 FF"'), encoding="utf-8")
    assert profiles_check_main(tmp_path, out=io.StringIO()) == 0


# ---------------------------------------------------------------- one resend on a bad checksum


def test_an_answer_with_a_bad_checksum_is_asked_for_once_more(sim: IdCardSimulator) -> None:
    card = make_card()
    sim.place_card(card)
    sim.inject(Fault.BAD_CHECKSUM, on=Command.READ_TEXT_PHOTO)  # the first answer only

    async def body(driver: SamIdReader) -> tuple[IdCard, dict[str, Any]]:
        return await driver.read_card(), dict(await driver.health())

    got, health = run(sim.device_path, body)
    assert got == card
    assert (health["reads_ok"], health["resends"], health["protocol_errors"]) == (1, 1, 0)
    assert sim.requests == [b"\x20\x01", b"\x20\x02", b"\x30\x01", b"\x30\x01"]


def test_a_second_bad_checksum_is_a_clear_counted_error(sim: IdCardSimulator) -> None:
    sim.place_card(make_card())
    for _ in range(2):
        sim.inject(Fault.BAD_CHECKSUM, on=Command.READ_TEXT_PHOTO)

    async def body(driver: SamIdReader) -> dict[str, Any]:
        with pytest.raises(FrameChecksumError) as caught:
            await driver.read_card()
        assert str(caught.value).startswith(
            "the answer to command READ_TEXT_PHOTO failed its checksum twice (sent once more)"
        )
        return dict(await driver.health())

    health = run(sim.device_path, body)
    assert (health["reads_failed"], health["resends"], health["protocol_errors"]) == (1, 1, 1)
    assert sim.requests.count(b"\x30\x01") == 2  # one resend, no more


# ---------------------------------------------------------------- a port that comes back


def test_a_reader_whose_port_vanished_and_came_back_is_reopened(tmp_path: Path) -> None:
    """Unplug and replug at the same path: a udev-style by-id symlink re-pointed to a new pty."""
    link = tmp_path / "usb-SAM_IDCard_Reader-if00-port0"
    card = make_card()
    events: list[DeviceEvent] = []
    first = IdCardSimulator(link=link).start()
    first.place_card(card)
    identity = DeviceIdentity(
        device_id="idr-r", profile="sam-a-serial", kind="id_card_reader", address=str(link)
    )

    async def main() -> tuple[IdCard, dict[str, Any]]:
        async with SamIdReader(identity, settings=FAST, on_event=events.append) as driver:
            await driver.read_card()
            first.unplug()  # pty master closed, link gone: the port vanished
            with pytest.raises(DeviceUnavailable):
                await driver.read_card()
            with pytest.raises(DeviceUnavailable, match="cannot open"):
                await driver.read_card()  # still missing: the reopen fails, clearly
            with IdCardSimulator(link=link) as second:  # plugged back: same path, new pty
                assert os.readlink(link) == second.pty_path
                second.place_card(card)
                got = await driver.read_card()  # no close()/open() by anyone
                return got, dict(await driver.health())

    try:
        got, health = asyncio.run(main())
    finally:
        first.stop()
    assert got == card
    assert (health["reopens"], health["reads_ok"], health["connected"]) == (1, 2, True)
    assert [e.name for e in events] == [
        "card.read",
        "device.unplugged",
        "device.ready",
        "card.read",
    ]


# ---------------------------------------------------------------- a module at another speed
#
# A pty carries bytes whatever speed its ends are set to, so the simulator emulates the
# mismatch: it reads the speed the driver set on the pty (termios) and ignores every byte
# sent at a speed other than the module's, as a real module's UART would see garbage and
# stay silent. Only once the driver tries the module's speed does it get an answer.


def test_set_baud_60_ii_switches_the_simulated_module(sim: IdCardSimulator) -> None:
    with serial.Serial(sim.device_path, 115200, timeout=1.0) as port:
        # 60 04: index 4 of (115200, 57600, 38400, 19200, 9600); CHK 00^03^60^04 = 67
        reply = exchange(port, bytes.fromhex("AAAAAA9669 0003 6004 67"), 11)
        assert reply == bytes.fromhex("AAAAAA9669 0004 000090 94")  # answered at the old speed
        port.timeout = 0.3
        assert exchange(port, STATUS, 11) == b""  # now deaf at 115200
        port.baudrate = 9600
        assert exchange(port, STATUS, 11) == bytes.fromhex("AAAAAA9669 0004 000090 94")
    assert sim.baudrate == 9600
    assert sim.ignored_bytes == len(STATUS)


def test_a_module_at_9600_is_found_by_trying_the_60_ii_rates(
    caplog: pytest.LogCaptureFixture,
) -> None:
    card = make_card()
    with IdCardSimulator(baudrate=9600) as sim:
        sim.place_card(card)

        async def body(driver: SamIdReader) -> tuple[Any, IdCard, dict[str, Any]]:
            # With the default timeouts the search fits the device manager's probe
            # deadline (probe_timeout_s, 5 s); it needs about 1 + 4 x 0.3 s.
            async with asyncio.timeout(5.0):
                probe = await driver.probe()
            return probe, await driver.read_card(), dict(await driver.health())

        # the setting says 115200; default command and probe timeouts
        probe, got, health = run(sim.device_path, body, command_timeout=1.0)
        # 115200, 57600, 38400 and 19200 went unheard; 9600 answered the probe's status
        assert sim.ignored_bytes == 4 * len(STATUS)
        assert sim.requests[:3] == [b"\x11\xff", b"\x11\xff", b"\x12\xff"]
    assert probe.serial == "05.01-20101028-0012345678-1234567890"
    assert got == card
    assert (health["baudrate"], health["baud_changes"], health["timeouts"]) == (9600, 1, 0)
    assert "answers at 9600 baud, not at 115200" in caplog.text


def test_without_probing_the_error_names_the_likely_cause() -> None:
    with IdCardSimulator(baudrate=9600) as sim, pytest.raises(DeviceTimeout) as caught:
        run(sim.device_path, lambda d: d.status(), baud_probe=False)
    message = str(caught.value)
    assert "at 115200 baud: a module set to another speed answers nothing" in message
    assert "check the baudrate setting (115200, 57600, 38400, 19200, 9600)" in message


def test_a_module_silent_at_every_speed_says_so(sim: IdCardSimulator) -> None:
    sim.inject(Fault.HANG)  # the module stops answering altogether

    async def body(driver: SamIdReader) -> dict[str, Any]:
        with pytest.raises(DeviceTimeout, match=r"at any speed \(115200, 57600"):
            await driver.status()
        return dict(await driver.health())

    health = run(sim.device_path, body)
    assert (health["baudrate"], health["baud_changes"], health["timeouts"]) == (115200, 0, 1)


# ---------------------------------------------------------------- more of the tables, as bytes


def ucs2(text: str, size: int) -> bytes:
    raw = text.encode("utf-16-le")
    return raw + b"\x20\x00" * ((size - len(raw)) // 2)


def test_driver_reads_a_resident_block_laid_out_by_the_offset_table() -> None:
    number = "11010519491231002X"  # the GB 11643 standard's own example number
    block = (
        ucs2("张三", 30)  # 0 name
        + ucs2("1", 2)  # 30 sex
        + ucs2("01", 4)  # 32 ethnicity
        + ucs2("19491231", 16)  # 36 birth
        + ucs2("北京市朝阳区某某路1号", 70)  # 52 address
        + ucs2(number, 36)  # 122 ID number
        + ucs2("北京市公安局朝阳分局", 30)  # 158 issuer
        + ucs2("20150101", 16)  # 188 valid-from
        + ucs2("长期", 16)  # 204 valid-to: long-term
        + ucs2("", 36)  # 220 reserved, no I/J/Y mark at 248
    )
    assert len(block) == 256
    card = parse_text_block(block)
    assert (card.card_type, card.name, card.sex_label, card.nation_label) == (
        CardType.RESIDENT,
        "张三",
        "男",
        "汉",
    )
    assert (card.birth_date.isoformat(), card.valid_from.isoformat()) == (
        "1949-12-31",
        "2015-01-01",
    )
    assert (card.address, card.id_number) == ("北京市朝阳区某某路1号", number)
    assert (card.authority, card.valid_to) == ("北京市公安局朝阳分局", None)


def test_sam_id_is_five_little_endian_fields() -> None:
    raw = (
        (5).to_bytes(2, "little")
        + (1).to_bytes(2, "little")
        + (20101028).to_bytes(4, "little")
        + (12345678).to_bytes(4, "little")
        + (1234567890).to_bytes(4, "little")
    )
    assert format_sam_id(raw) == "05.01-20101028-0012345678-1234567890"
    with IdCardSimulator(sam_id=raw) as sim, serial.Serial(sim.device_path, 115200) as port:
        port.timeout = 1.0
        # 12 FF → 00 14: SW + 16 bytes, a 27-byte frame
        assert exchange(port, bytes.fromhex("AAAAAA9669 0003 12FF EE"), 27) == frame(
            b"\x00\x00\x90" + raw
        )


def test_no_card_is_the_documented_error_frame(sim: IdCardSimulator) -> None:
    with serial.Serial(sim.device_path, 115200, timeout=1.0) as port:
        assert exchange(port, FIND, 11) == bytes.fromhex("AAAAAA9669 0004 000080 84")
    with pytest.raises(DeviceRefused) as caught:
        run(sim.device_path, lambda d: d.read_card())
    assert caught.value.code == "no_card"


def test_read_with_fingerprint_has_three_lengths_and_text_at_16(sim: IdCardSimulator) -> None:
    card = make_card(fingerprint=True)
    sim.place_card(card)
    with serial.Serial(sim.device_path, 115200, timeout=1.0) as port:
        exchange(port, FIND, 15)
        exchange(port, SELECT, 19)
        # 30 10 → len 0x050A + fpLen 0x0400; text 0100, photo 0400, fingerprint 0400
        reply = exchange(port, bytes.fromhex("AAAAAA9669 0003 3010 23"), 7 + 0x090A)
    assert reply[:16] == bytes.fromhex("AAAAAA9669 090A 000090 0100 0400 0400")
    assert len(reply) == 7 + 0x090A
    assert parse_text_block(reply[16 : 16 + 256]).id_number == card.id_number
    assert reply[16 + 256 + 1024 : -1] == card.fingerprint


def test_a_port_lost_while_idle_is_reported_once_and_refused_clearly(sim: IdCardSimulator) -> None:
    events: list[DeviceEvent] = []
    identity = DeviceIdentity(
        device_id="idr-i", profile="sam-a-serial", kind="id_card_reader", address=sim.device_path
    )

    async def main() -> dict[str, Any]:
        async with SamIdReader(identity, settings=FAST, on_event=events.append) as driver:
            await driver.status()
            sim.unplug()
            async with asyncio.timeout(5):  # the loop notices the hang-up by itself
                while (await driver.health())["connected"]:  # noqa: ASYNC110 - deadline
                    await asyncio.sleep(0.01)
            for _ in range(2):
                with pytest.raises(DeviceUnavailable, match="cannot open"):
                    await driver.status()
            return dict(await driver.health())

    health = asyncio.run(main())
    assert [e.name for e in events] == ["device.unplugged"]
    assert (health["unavailable"], health["reopens"]) == (2, 0)


def test_a_request_the_module_got_corrupted_is_sent_once_more(sim: IdCardSimulator) -> None:
    card = make_card()
    sim.place_card(card)
    sim.inject(Fault.REQUEST_CORRUPTED, on=Command.READ_TEXT_PHOTO)  # module answers SW3 10

    async def body(driver: SamIdReader) -> tuple[IdCard, dict[str, Any]]:
        return await driver.read_card(), dict(await driver.health())

    got, health = run(sim.device_path, body)
    assert got == card
    assert (health["resends"], health["protocol_errors"]) == (1, 0)
    for _ in range(2):
        sim.inject(Fault.REQUEST_CORRUPTED, on=Command.READ_TEXT_PHOTO)
    with pytest.raises(ProtocolError, match="reader rejected our frame: host frame checksum"):
        run(sim.device_path, lambda d: d.read_card())
