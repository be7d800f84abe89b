"""The evaluation pad driver against its simulator, over a real pty and a real TCP socket."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from edge_agent.devices import DeviceEvent, DeviceIdentity, DeviceRefused, DeviceTimeout
from edge_agent.devices.evaluation_pad.driver import EvaluationPad
from edge_agent.devices.evaluation_pad.models import OutcomeStatus
from edge_agent.devices.evaluation_pad.protocol import MsgType, crc16, encode_frame, parse_frame
from edge_agent.devices.evaluation_pad.simulator import EvaluationPadSimulator
from edge_agent.devices.registry import driver_class
from edge_agent.devices.stream import FrameScanner
from tests.devices.link_reads import LinkReads

TRANSPORTS = ["pty", "tcp"]

Scenario = Callable[[EvaluationPad, EvaluationPadSimulator], Awaitable[None]]


def run(
    transport: str,
    scenario: Scenario,
    *,
    settings: dict[str, Any] | None = None,
    events: list[DeviceEvent] | None = None,
) -> None:
    """Start a simulator, open a driver on it, bind window 3, run ``scenario``."""

    async def main() -> None:
        async with EvaluationPadSimulator(transport=transport) as sim:
            identity = DeviceIdentity(
                device_id="pad-1", profile="sim", kind="evaluation_pad", address=sim.address
            )
            pad = EvaluationPad(
                identity,
                settings={"ack_timeout": 0.3, "walkaway_grace": 0.5, **(settings or {})},
                on_event=events.append if events is not None else None,
            )
            async with pad:
                await pad.bind_window("3", staff_id="S007")
                async with asyncio.timeout(10):
                    await scenario(pad, sim)

    asyncio.run(main())


def test_crc_matches_the_catalogue_check_value() -> None:
    assert crc16(b"123456789") == 0x29B1


# The frame layout pinned with the byte examples of docs/devices/evaluation-pad.md
# (STX 02, VER 01, TYPE, SEQ, LEN big-endian, JSON body, CRC-16/CCITT-FALSE, ETX 03),
# written out by hand, never produced by the driver's encoder.
HELLO_SEQ1 = bytes.fromhex("02 01 01 01 00 00 FA D9 03")
ACK_SEQ1 = bytes.fromhex("02 01 06 01 00 00 AB F4 03")
BIND_WINDOW3_S007_SEQ2 = (
    bytes.fromhex("02 01 03 02 00 20")
    + b'{"window":"3","staff_id":"S007"}'
    + bytes.fromhex("BF 07 03")
)
RESULT_SEQ5 = (
    bytes.fromhex("02 01 11 05 00 58")
    + b'{"request_id":"r1","stars":5,"tags":["attitude"],"text":"",'
    + b'"time":"2024-05-01 09:31:00"}'
    + bytes.fromhex("59 74 03")
)


@pytest.mark.parametrize(
    ("frame", "msg_type", "seq", "body"),
    [
        (HELLO_SEQ1, MsgType.HELLO, 1, None),
        (ACK_SEQ1, MsgType.ACK, 1, None),
        (BIND_WINDOW3_S007_SEQ2, MsgType.BIND, 2, {"window": "3", "staff_id": "S007"}),
        (
            RESULT_SEQ5,
            MsgType.RESULT,
            5,
            {
                "request_id": "r1",
                "stars": 5,
                "tags": ["attitude"],
                "text": "",
                "time": "2024-05-01 09:31:00",
            },
        ),
    ],
    ids=["hello", "ack", "bind", "result"],
)
def test_frames_match_the_documented_bytes(
    frame: bytes, msg_type: MsgType, seq: int, body: dict[str, Any] | None
) -> None:
    assert encode_frame(msg_type, seq, body) == frame
    scanner = FrameScanner(parse_frame, starts=b"\x02")
    [parsed] = scanner.feed(frame)
    assert parsed.seq == seq
    assert parsed.type == msg_type
    assert parsed.json() == (body or {})
    assert scanner.take_errors() == []


def test_documented_result_frame_is_97_bytes() -> None:
    assert len(RESULT_SEQ5) == 97


def test_frame_round_trip_and_resync_after_noise() -> None:
    frame = encode_frame(MsgType.RESULT, 7, {"request_id": "r", "stars": 5})
    scanner = FrameScanner(parse_frame, starts=b"\x02")
    broken = bytearray(frame)
    broken[8] ^= 0x01
    out = scanner.feed(b"\x02\x01\xff\x00garbage" + bytes(broken) + frame[:5])
    assert out == []
    out = scanner.feed(frame[5:])
    assert [f.seq for f in out] == [7]
    assert out[0].json()["stars"] == 5
    assert "crc" in scanner.take_errors()


def test_truncated_frame_is_dropped_when_a_valid_one_follows() -> None:
    good = encode_frame(MsgType.ACK, 9)
    scanner = FrameScanner(parse_frame, starts=b"\x02")
    assert scanner.feed(encode_frame(MsgType.RESULT, 1, {"x": "y" * 50})[:20]) == []
    assert [f.seq for f in scanner.feed(good)] == [9]
    assert scanner.take_errors() == ["truncated"]


def test_registered_under_profile_name() -> None:
    assert driver_class("haochaping_pad") is EvaluationPad


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_probe_and_status(transport: str) -> None:
    async def scenario(pad: EvaluationPad, sim: EvaluationPadSimulator) -> None:
        probe = await pad.probe()
        assert probe.model == "SIM-PAD-1"
        assert probe.serial == "PAD0001"
        status = await pad.status()
        assert status == {"state": "idle", "window": "3"}

    run(transport, scenario)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_citizen_rates_five_with_tags(transport: str) -> None:
    events: list[DeviceEvent] = []

    async def scenario(pad: EvaluationPad, sim: EvaluationPadSimulator) -> None:
        task = asyncio.create_task(
            pad.request_evaluation(
                "330100202405010001", staff_id="S007", item_code="T1", item_name="社保卡申领"
            )
        )
        shown = await sim.wait_for_request()
        assert shown["case_no"] == "330100202405010001"
        assert shown["window"] == "3"
        sim.press(5, tags=["efficiency", "attitude"], text="办事很快")
        outcome = await task
        assert outcome.status is OutcomeStatus.RATED
        assert outcome.result is not None
        assert outcome.result.stars == 5
        assert outcome.result.level_code == 1  # GB/T 39046: 1 = 非常满意
        assert outcome.result.satisfaction == "非常满意"
        assert outcome.result.tags == ("efficiency", "attitude")
        record = outcome.to_record()
        assert record["pf"] == 4
        assert record["assessNumber"] == 1
        assert record["writingEvaluation"] == "办事很快"

    run(transport, scenario, events=events)
    given = [e for e in events if e.name == "rating.given"]
    assert len(given) == 1
    assert given[0].data["stars"] == 5
    flat = repr(given[0].data)
    assert "330100202405010001" not in flat
    assert "办事很快" not in flat


def test_zhejiang_coding_flips_the_level_code_and_flags_bad_review() -> None:
    async def scenario(pad: EvaluationPad, sim: EvaluationPadSimulator) -> None:
        task = asyncio.create_task(pad.request_evaluation("C1", staff_id="S1", assess_number=2))
        await sim.wait_for_request()
        sim.press(1)
        outcome = await task
        assert outcome.result is not None
        assert outcome.result.level_code == 1  # Zhejiang: 1 = 非常不满意
        assert outcome.result.is_bad
        assert outcome.result.score == 0
        assert outcome.to_record()["assessNumber"] == 2

    run("pty", scenario, settings={"level_coding": "zhejiang"})


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_citizen_walks_away(transport: str) -> None:
    async def scenario(pad: EvaluationPad, sim: EvaluationPadSimulator) -> None:
        outcome = await pad.request_evaluation("C2", staff_id="S1", walkaway_after=1.0)
        assert outcome.status is OutcomeStatus.TIMED_OUT
        assert outcome.result is None
        assert outcome.waited_s >= 0.9
        assert (await pad.health())["timed_out"] == 1

    run(transport, scenario)


def test_walkaway_can_raise() -> None:
    async def scenario(pad: EvaluationPad, sim: EvaluationPadSimulator) -> None:
        task = asyncio.create_task(pad.request_evaluation("C3", staff_id="S1"))
        await sim.wait_for_request()
        sim.walk_away()
        with pytest.raises(DeviceTimeout, match="citizen left"):
            await task

    run("tcp", scenario, settings={"walkaway_raises": True})


def test_pad_stops_answering_mid_request() -> None:
    async def scenario(pad: EvaluationPad, sim: EvaluationPadSimulator) -> None:
        task = asyncio.create_task(pad.request_evaluation("C4", staff_id="S1", walkaway_after=1.0))
        await sim.wait_for_request()
        sim.silent = True  # no rating, no walk-away report
        with pytest.raises(DeviceTimeout, match="neither a rating"):
            await task

    run("pty", scenario)


def test_silent_pad_times_out_the_probe() -> None:
    async def scenario(pad: EvaluationPad, sim: EvaluationPadSimulator) -> None:
        # Binding the window may itself have needed a retransmit on a busy machine.
        before = (await pad.health())["retransmits"]
        sim.silent = True
        with pytest.raises(DeviceTimeout, match="did not answer HELLO"):
            await pad.probe()
        assert (await pad.health())["retransmits"] - before == 2

    run("pty", scenario)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_bad_crc_report_is_naked_and_retransmitted(transport: str) -> None:
    async def scenario(pad: EvaluationPad, sim: EvaluationPadSimulator) -> None:
        task = asyncio.create_task(pad.request_evaluation("C5", staff_id="S1"))
        await sim.wait_for_request()
        sim.corrupt_next_report = True
        sim.press(4)
        outcome = await task
        assert outcome.result is not None
        assert outcome.result.stars == 4
        health = await pad.health()
        assert int(health["protocol_errors"]) >= 1
        assert int(health["bad_frames"]) >= 1

    run(transport, scenario)


def test_noise_and_truncated_frame_before_a_valid_report() -> None:
    async def scenario(pad: EvaluationPad, sim: EvaluationPadSimulator) -> None:
        task = asyncio.create_task(pad.request_evaluation("C6", staff_id="S1"))
        await sim.wait_for_request()
        sim.inject(b"\xff\x00\x02\x02\x09noise" + encode_frame(MsgType.RESULT, 99, {"a": 1})[:12])
        sim.press(3)
        outcome = await task
        assert outcome.result is not None
        assert outcome.result.satisfaction == "基本满意"
        assert int((await pad.health())["garbage_bytes"]) > 0

    run("pty", scenario)


def test_host_frame_with_bad_crc_is_naked_by_the_pad() -> None:
    async def main() -> None:
        async with EvaluationPadSimulator(transport="tcp") as sim:
            host, port = sim.address.split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            bad = bytearray(encode_frame(MsgType.HELLO, 5))
            bad[-2] ^= 0x55
            writer.write(bytes(bad))
            async with asyncio.timeout(3):
                data = await reader.read(100)
            frame = parse_frame(data, 0)
            assert isinstance(frame, tuple)
            assert frame[0].type == MsgType.NAK
            assert frame[0].json() == {"error": "crc"}
            writer.close()

    asyncio.run(main())


def test_unbound_or_wrong_window_is_refused() -> None:
    async def scenario(pad: EvaluationPad, sim: EvaluationPadSimulator) -> None:
        with pytest.raises(DeviceRefused) as info:
            await pad.request_evaluation("C7", window="9", staff_id="S1")
        assert info.value.code == "window"
        task = asyncio.create_task(pad.request_evaluation("C8", staff_id="S1"))
        await sim.wait_for_request()
        with pytest.raises(DeviceRefused) as busy:
            await pad.request_evaluation("C9", staff_id="S1")
        assert busy.value.code == "busy"
        sim.press(5)
        await task

    run("tcp", scenario)


def test_cancel_clears_the_pad() -> None:
    async def scenario(pad: EvaluationPad, sim: EvaluationPadSimulator) -> None:
        task = asyncio.create_task(pad.request_evaluation("C10", staff_id="S1"))
        shown = await sim.wait_for_request()
        await pad.cancel(shown["request_id"])
        assert sim.showing is None
        assert (await task).status is OutcomeStatus.CANCELLED

    run("pty", scenario)


@pytest.mark.timeout(30)
def test_an_idle_pad_is_not_polled_and_a_stalled_half_frame_is_still_dropped() -> None:
    """Between requests the driver waits for the pad's bytes without a deadline (it
    woke every ``frame_gap`` to look at a silent line: issue 17). A frame cut off
    halfway is dropped after ``frame_gap`` of silence, and the pad still answers."""

    async def scenario(pad: EvaluationPad, sim: EvaluationPadSimulator) -> None:
        reads = LinkReads(pad._link)
        await asyncio.sleep(0.2)  # the read after the binding's answer begins
        settled = reads.count
        await asyncio.sleep(1.5)  # five frame gaps of a silent line
        assert reads.count == settled, "the driver polled a silent pad"

        half = HELLO_SEQ1[:5]
        sim.inject(half)
        await asyncio.sleep(0.9)  # three frame gaps of silence: the half frame goes
        assert await pad.status() == {"state": "idle", "window": "3"}
        health = await pad.health()
        assert health["bad_frames"] == 0
        assert health["garbage_bytes"] == len(half)

    run("pty", scenario, settings={"frame_gap": 0.3})
