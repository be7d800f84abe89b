"""The caller keypad driver against its simulator, over a real pty and a real TCP socket."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from edge_agent.devices import DeviceEvent, DeviceIdentity, DeviceTimeout
from edge_agent.devices.caller_keypad.driver import CallerKeypad
from edge_agent.devices.caller_keypad.protocol import (
    Func,
    Key,
    decode_key,
    display_data,
    encode_frame,
    parse_frame,
)
from edge_agent.devices.caller_keypad.simulator import CallerKeypadSimulator
from edge_agent.devices.stream import FrameScanner
from tests.devices.link_reads import LinkReads

TRANSPORTS = ["pty", "tcp"]
Scenario = Callable[[CallerKeypad, CallerKeypadSimulator], Awaitable[None]]


def run(
    transport: str,
    scenario: Scenario,
    *,
    settings: dict[str, Any] | None = None,
    events: list[DeviceEvent] | None = None,
) -> None:
    """Start a simulated bus of keypads 1-4, open the driver on it, run ``scenario``."""

    async def main() -> None:
        async with CallerKeypadSimulator(transport=transport) as sim:
            identity = DeviceIdentity(
                device_id="kp-bus", profile="sim", kind="caller_keypad", address=sim.address
            )
            keypad = CallerKeypad(
                identity,
                settings={"reply_timeout": 0.3, **(settings or {})},
                on_event=events.append if events is not None else None,
            )
            async with keypad:
                async with asyncio.timeout(10):
                    await scenario(keypad, sim)

    asyncio.run(main())


def test_display_frame_matches_the_documented_shape() -> None:
    frame = encode_frame(3, Func.DISPLAY, display_data("A012"))
    assert frame[:7] == bytes.fromhex("ff 68 08 08 68 03 02")
    assert frame[-1] == 0x16
    assert frame[-2] == sum(frame[5:-2]) & 0xFF


def test_key_codes() -> None:
    assert decode_key(b"\x06\x0f") == (Key.SKIP, "")
    assert decode_key(b"\x0c") == (Key.CALL, "")
    assert decode_key(b"\x03\x0fA012") == (Key.CALLBACK, "A012")
    with pytest.raises(ValueError, match="unknown key"):
        decode_key(b"\x7f")


def test_scanner_skips_bad_checksum_and_truncated_frames() -> None:
    good = encode_frame(2, Func.KEY, b"\x0c")
    bad = good[:-2] + bytes([good[-2] ^ 1]) + good[-1:]
    scanner = FrameScanner(parse_frame, starts=b"\xff\x68\xe5")
    frames = scanner.feed(bad + b"\x00\x01" + good[:6] + good)
    assert [(f.addr, f.data) for f in frames] == [(2, b"\x0c")]
    assert "checksum" in scanner.take_errors()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_key_becomes_an_event(transport: str) -> None:
    events: list[DeviceEvent] = []

    async def scenario(keypad: CallerKeypad, sim: CallerKeypadSimulator) -> None:
        probe = await keypad.probe()
        assert probe.model == "SIM-KEYPAD"
        for key in Key:
            sim.press(3, key, arg="5" if key is Key.TRANSFER else "")
            press = await keypad.next_key(within=2)
            assert press.key is key
            assert press.window == "3"
        async with asyncio.timeout(2):  # the last E5 may still be in flight
            while sim.acks_received < len(Key):  # noqa: ASYNC110 - poll under a deadline
                await asyncio.sleep(0.01)
        assert sim.acks_received == len(Key)

    run(transport, scenario, events=events)
    names = [e.name for e in events]
    assert names[0] == "keypad.call"
    assert events[0].data == {"window": "3", "address": 3, "arg": ""}
    assert {"keypad.skip", "keypad.hold", "keypad.callback", "keypad.transfer"} <= set(names)
    assert next(e for e in events if e.name == "keypad.transfer").data["arg"] == "5"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_show_current_ticket(transport: str) -> None:
    async def scenario(keypad: CallerKeypad, sim: CallerKeypadSimulator) -> None:
        await keypad.show("2", "A012")
        assert sim.display(2) == "A012"
        assert sim.displays[2] == "  A012"

    run(transport, scenario)


def test_keys_carry_their_bus_address() -> None:
    """Which window an address serves is the agent's [[queue_windows]], not the driver's."""

    async def scenario(keypad: CallerKeypad, sim: CallerKeypadSimulator) -> None:
        sim.press(4, Key.CALL)
        press = await keypad.next_key(within=2)
        assert (press.address, press.window) == (4, "4")
        await keypad.show(4, "B003")
        assert sim.display(4) == "B003"

    run("pty", scenario)


def test_bad_checksum_then_noise_then_valid_key() -> None:
    async def scenario(keypad: CallerKeypad, sim: CallerKeypadSimulator) -> None:
        sim.corrupt_next = True
        sim.press(1, Key.RECALL)
        sim.inject(b"\x00\x55\xff\x10")
        sim.press(1, Key.CALL)
        press = await keypad.next_key(within=2)
        assert press.key is Key.CALL
        with pytest.raises(DeviceTimeout):
            await keypad.next_key(within=0.2)
        assert int((await keypad.health())["bad_frames"]) >= 1

    run("pty", scenario)


def test_keypad_stops_answering_display() -> None:
    async def scenario(keypad: CallerKeypad, sim: CallerKeypadSimulator) -> None:
        sim.silent = True
        with pytest.raises(DeviceTimeout, match="DISPLAY after 3 tries"):
            await keypad.show("1", "A001")
        assert (await keypad.health())["retransmits"] == 2

    run("tcp", scenario)


def test_display_text_must_fit() -> None:
    with pytest.raises(ValueError, match="holds 6"):
        display_data("A0123456")
    with pytest.raises(ValueError, match="ASCII"):
        display_data("叫号")


@pytest.mark.timeout(30)
def test_an_idle_bus_is_not_polled_and_a_stalled_half_frame_is_still_dropped() -> None:
    """Between keys the driver waits for bytes without a deadline (it woke every
    ``frame_gap`` to look at an empty bus: issue 17). A frame cut off halfway is still
    dropped after ``frame_gap`` of silence — as garbage, not as a broken frame found
    when the next one came — and the key after it is read."""

    async def scenario(keypad: CallerKeypad, sim: CallerKeypadSimulator) -> None:
        reads = LinkReads(keypad._link)
        await asyncio.sleep(0.2)  # the read after the opening probe's answer begins
        settled = reads.count
        await asyncio.sleep(1.5)  # five frame gaps of an idle bus
        assert reads.count == settled, "the driver polled an idle bus"

        half = encode_frame(2, Func.KEY, b"\x01")[:4]
        sim.inject(half)
        await asyncio.sleep(0.9)  # three frame gaps of silence: the half frame goes
        sim.press(1, Key.CALL)
        press = await keypad.next_key(within=2)
        assert press.key is Key.CALL
        health = await keypad.health()
        assert health["bad_frames"] == 0
        assert health["garbage_bytes"] == len(half)

    run("pty", scenario, settings={"frame_gap": 0.3})
