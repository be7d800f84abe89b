"""The window LED driver against its simulator, over a real pty and a real TCP socket."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from edge_agent.devices import DeviceIdentity, DeviceRefused, DeviceTimeout
from edge_agent.devices.led_screen.driver import LedWindowScreen
from edge_agent.devices.led_screen.protocol import (
    Cmd,
    LedTextError,
    encode_frame,
    encode_text,
    parse_frame,
)
from edge_agent.devices.led_screen.simulator import LedScreenSimulator
from edge_agent.devices.stream import FrameScanner

TRANSPORTS = ["pty", "tcp"]
Scenario = Callable[[LedWindowScreen, LedScreenSimulator], Awaitable[None]]


def run(transport: str, scenario: Scenario, *, settings: dict[str, Any] | None = None) -> None:
    """Start a simulated bus of screens 1-8, open the driver on it, run ``scenario``."""

    async def main() -> None:
        async with LedScreenSimulator(addresses=range(1, 9), transport=transport) as sim:
            identity = DeviceIdentity(
                device_id="led-bus", profile="sim", kind="led_screen", address=sim.address
            )
            led = LedWindowScreen(identity, settings={"reply_timeout": 0.3, **(settings or {})})
            async with led:
                async with asyncio.timeout(10):
                    await scenario(led, sim)

    asyncio.run(main())


def test_frame_bytes() -> None:
    frame = encode_frame(3, Cmd.CLEAR, b"\x00")
    assert frame == bytes.fromhex("aa55 03 02 0001 00 06")
    scanner = FrameScanner(parse_frame, starts=b"\xaa")
    bad = frame[:-1] + b"\x07"
    assert scanner.feed(b"\xaa\x00zz" + bad + frame) == [parse_frame(frame, 0)[0]]  # type: ignore[index]
    assert scanner.take_errors() == ["sync", "checksum"]


def test_text_must_be_gb2312() -> None:
    assert encode_text("请A012号") == "请A012号".encode("gb2312")
    with pytest.raises(LedTextError, match="U\\+5803") as info:
        encode_text("王堃")
    assert info.value.index == 1
    assert encode_text("王堃", unencodable="replace") == "王□".encode("gb2312")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_show_lines_per_window(transport: str) -> None:
    async def scenario(led: LedWindowScreen, sim: LedScreenSimulator) -> None:
        probe = await led.probe()
        assert probe.model == "SIM-LED-WIN"
        assert probe.details["lines"] == 2
        await led.show_lines("3", ["请A012号", "等候人数:005"])
        await led.show_text(5, "暂停服务")
        assert sim.text(3, 1) == "请A012号"
        assert sim.text(3, 2) == "等候人数:005"
        assert sim.text(5) == "暂停服务"
        assert sim.text(4) == ""
        await led.clear(3)
        assert sim.text(3) == ""

    run(transport, scenario)


def test_addresses_and_broadcast() -> None:
    async def scenario(led: LedWindowScreen, sim: LedScreenSimulator) -> None:
        await led.show_text(7, "欢迎")  # a bus address ([[queue_windows]] led_address)
        assert sim.text(7) == "欢迎"
        with pytest.raises(ValueError, match="led_address"):
            await led.show_text("VIP", "欢迎")  # names are mapped by the agent config
        await led.broadcast_text("系统维护")
        await led.show_text(1, "x")  # a reply proves the broadcast before it was handled
        assert sim.text(2) == "系统维护"

    run("tcp", scenario)


def test_unencodable_text_is_rejected_before_sending() -> None:
    async def scenario(led: LedWindowScreen, sim: LedScreenSimulator) -> None:
        with pytest.raises(LedTextError, match="not in GB2312"):
            await led.show_lines(2, ["请A001号", "王喆"])
        assert sim.received == []
        assert sim.text(2) == ""

    run("pty", scenario)


def test_unencodable_text_substituted_when_configured() -> None:
    async def scenario(led: LedWindowScreen, sim: LedScreenSimulator) -> None:
        await led.show_text(2, "王喆请到2号")
        assert sim.text(2) == "王□请到2号"

    run("pty", scenario, settings={"unencodable": "replace"})


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_damaged_reply_is_retried(transport: str) -> None:
    async def scenario(led: LedWindowScreen, sim: LedScreenSimulator) -> None:
        sim.corrupt_next_reply = True
        await led.show_text(1, "A001")
        health = await led.health()
        assert health["retransmits"] == 1
        assert health["bad_frames"] == 1
        assert sim.text(1) == "A001"

    run(transport, scenario)


def test_noise_before_a_reply_is_skipped() -> None:
    async def scenario(led: LedWindowScreen, sim: LedScreenSimulator) -> None:
        sim.inject(b"\x00\xaa\x55\x01" + encode_frame(9, 0x81, b"\x00")[:4])
        await led.show_text(1, "A001")
        assert (await led.health())["retransmits"] == 0

    run("pty", scenario)


def test_host_frame_with_bad_checksum_gets_no_reply() -> None:
    async def main() -> None:
        async with LedScreenSimulator(transport="tcp") as sim:
            host, port = sim.address.split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            frame = encode_frame(1, Cmd.QUERY)
            writer.write(frame[:-1] + bytes([frame[-1] ^ 1]))
            await writer.drain()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await reader.read(10)
            writer.write(frame)
            async with asyncio.timeout(3):
                reply = await reader.read(100)
            parsed = parse_frame(reply, 0)
            assert isinstance(parsed, tuple)
            assert parsed[0].cmd == 0x90
            assert sim.bad_frames == 1
            writer.close()

    asyncio.run(main())


def test_missing_screen_times_out() -> None:
    async def scenario(led: LedWindowScreen, sim: LedScreenSimulator) -> None:
        with pytest.raises(DeviceTimeout, match="LED 12 did not answer"):
            await led.show_text(12, "A001")

    run("pty", scenario)


def test_screen_stops_answering() -> None:
    async def scenario(led: LedWindowScreen, sim: LedScreenSimulator) -> None:
        await led.show_text(1, "A001")
        sim.silent = True
        with pytest.raises(DeviceTimeout):
            await led.show_text(1, "A002")
        assert (await led.health())["commands_failed"] == 1

    run("tcp", scenario)


def test_screen_refuses_a_line_it_lacks() -> None:
    async def scenario(led: LedWindowScreen, sim: LedScreenSimulator) -> None:
        with pytest.raises(DeviceRefused) as info:
            await led.show_text(1, "A001", line=3)
        assert info.value.code == "bad_line"

    run("pty", scenario)
