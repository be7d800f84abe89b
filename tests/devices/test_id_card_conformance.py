"""The SAM_A driver and simulator held to the protocol's own bytes, and its rough edges.

Both the driver and the simulator build their frames with ``sam_frame``/``sam_text``, so
a misreading there would pass every round trip. The frames here are therefore written
out as literals from the protocol tables (docs/devices/id-card-reader.md), with
checksums computed by hand (the XOR of every byte from the length field on), and
each side is checked against them separately: the simulator's answers byte for byte
over a real pseudo-terminal, the driver's parsing of the literal payloads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import serial

from edge_agent.devices import DeviceIdentity
from edge_agent.devices.drivers.id_card import SamIdReader
from edge_agent.devices.sam_frame import parse_response
from edge_agent.devices.sam_text import decode_extra_addresses
from edge_agent.devices.simulators.id_card import IdCardSimulator, make_card

T = TypeVar("T")
FAST = {"command_timeout": 0.5, "read_timeout": 0.5, "busy_timeout": 0.3}

# Request frames exactly as the protocol table lists them.
STATUS = bytes.fromhex("AAAAAA9669 0003 11FF ED")
FIND = bytes.fromhex("AAAAAA9669 0003 2001 22")
SELECT = bytes.fromhex("AAAAAA9669 0003 2002 21")
READ_EXTRA_ADDRESS = bytes.fromhex("AAAAAA9669 0003 3003 30")

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
        device_id="idr-c", profile="sam-a-serial", kind="id_card", address=address
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
