"""Queue engine rules against a real SQLite file in a temporary data dir."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.devices.led_screen.protocol import encode_text
from edge_agent.queueing import (
    BusinessType,
    NoCurrentTicket,
    QueueEngine,
    TicketNotFound,
    TicketStatus,
    UnknownBusinessType,
    UnknownWindow,
    WindowConfig,
    WindowPaused,
    speech_text,
)

TYPES = [
    BusinessType(code="social", prefix="A", name="社保医保"),
    BusinessType(code="tax", prefix="B", name="税务"),
]


class FakeClock:
    """A settable clock; starts 2024-05-01 09:00 in Shanghai (01:00 UTC)."""

    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 1, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def run(
    tmp_path: Path,
    scenario: Callable[[QueueEngine, FakeClock], Awaitable[None]],
    *,
    clock: FakeClock | None = None,
    timezone: str = "Asia/Shanghai",
) -> None:
    """Open an engine with windows 1 (A), 2 (A, B), 3 (B) and run ``scenario``."""
    clock = clock or FakeClock()

    async def main() -> None:
        async with QueueEngine(tmp_path, TYPES, clock=clock, timezone=timezone) as engine:
            await engine.configure_window("1", ["social"])
            await engine.configure_window("2", ["social", "tax"])
            await engine.configure_window("3", ["tax"])
            async with asyncio.timeout(10):
                await scenario(engine, clock)

    asyncio.run(main())


def test_numbering_per_business_type(tmp_path: Path) -> None:
    async def scenario(engine: QueueEngine, clock: FakeClock) -> None:
        numbers = [(await engine.issue("social")).ticket for _ in range(12)]
        assert [t.number for t in numbers if t] == [f"A{n:03d}" for n in range(1, 13)]
        b = await engine.issue("tax")
        assert b.ticket is not None
        assert b.ticket.number == "B001"
        assert b.waiting == 0
        assert (await engine.issue("social")).waiting == 12
        with pytest.raises(UnknownBusinessType):
            await engine.issue("passport")

    run(tmp_path, scenario)


def test_daily_reset_follows_the_outlet_timezone(tmp_path: Path) -> None:
    async def scenario(engine: QueueEngine, clock: FakeClock) -> None:
        clock.now = datetime(2024, 5, 1, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
        first = await engine.issue("social")
        assert first.ticket is not None
        assert first.ticket.day == "2024-05-01"
        clock.advance(minutes=45)  # 00:15 on 2 May in Shanghai, still 1 May in UTC
        second = await engine.issue("social")
        assert second.ticket is not None
        assert (second.ticket.number, second.ticket.day) == ("A001", "2024-05-02")
        tax = await engine.issue("tax")
        assert tax.ticket is not None
        assert tax.ticket.number == "B001"
        # yesterday's ticket is not callable today
        called = await engine.call("1")
        assert called.ticket is not None
        assert called.ticket.day == "2024-05-02"
        assert (await engine.close_day()).event["skipped"] == 1

    run(tmp_path, scenario)


def test_utc_outlet_does_not_reset_at_shanghai_midnight(tmp_path: Path) -> None:
    async def scenario(engine: QueueEngine, clock: FakeClock) -> None:
        clock.now = datetime(2024, 5, 1, 15, 30, tzinfo=UTC)
        await engine.issue("social")
        clock.advance(minutes=45)
        second = await engine.issue("social")
        assert second.ticket is not None
        assert second.ticket.number == "A002"

    run(tmp_path, scenario, timezone="UTC")


def test_call_announce_led_and_order(tmp_path: Path) -> None:
    async def scenario(engine: QueueEngine, clock: FakeClock) -> None:
        for code in ["social", "tax", "social"]:
            await engine.issue(code)
            clock.advance(seconds=1)
        call = await engine.call("3")
        assert call.ticket is not None
        assert call.ticket.number == "B001"
        assert call.announcement == "请B001号到3号窗口办理业务"
        first = await engine.call("2")
        assert first.ticket is not None
        assert first.ticket.number == "A001"
        assert first.led is not None
        assert first.led.lines == ("请A001号到2号窗口", "等候人数:001")
        encode_text(first.led.lines[0])  # LED-safe
        nxt = await engine.call("2")
        assert nxt.ticket is not None
        assert nxt.ticket.number == "A002"
        assert nxt.event["finished"] == "A001"
        done = await engine.ticket("A001")
        assert done is not None
        assert done.status is TicketStatus.DONE
        empty = await engine.call("1")
        assert empty.ticket is None
        assert empty.event["kind"] == "queue.call_empty"
        with pytest.raises(UnknownWindow):
            await engine.call("99")

    run(tmp_path, scenario)


def test_announcement_of_a012_at_window_3(tmp_path: Path) -> None:
    async def scenario(engine: QueueEngine, clock: FakeClock) -> None:
        await engine.configure_window("3", ["social"])
        for _ in range(12):
            await engine.issue("social")
        for _ in range(12):
            result = await engine.call("3")
        assert result.announcement is not None
        assert result.announcement.startswith("请A012号到3号窗口办理")
        assert speech_text(result.announcement) == "请A零一二号到三号窗口办理业务"
        recall = await engine.recall("3")
        assert recall.announcement == "请A012号到3号窗口办理业务(重呼)"
        assert recall.ticket is not None
        assert recall.ticket.calls == 2

    run(tmp_path, scenario)


def test_skip_hold_and_call_back(tmp_path: Path) -> None:
    async def scenario(engine: QueueEngine, clock: FakeClock) -> None:
        for _ in range(3):
            await engine.issue("social")
        await engine.call("1")
        skipped = await engine.skip("1")
        assert skipped.ticket is not None
        assert skipped.ticket.status is TicketStatus.SKIPPED
        with pytest.raises(NoCurrentTicket):
            await engine.recall("1")
        await engine.call("1")  # A002
        held = await engine.hold("1")
        assert held.ticket is not None
        assert held.ticket.number == "A002"
        assert held.ticket.status is TicketStatus.HELD
        back = await engine.call_back("2", "A001")
        assert back.ticket is not None
        assert back.ticket.window == "2"
        assert back.event["previous_status"] == "skipped"
        back2 = await engine.call_back("1", "A002")
        assert back2.announcement == "请A002号到1号窗口办理业务"
        with pytest.raises(TicketNotFound):
            await engine.call_back("1", "A003")  # waiting, not held/skipped
        nxt = await engine.call("1")
        assert nxt.ticket is not None
        assert nxt.ticket.number == "A003"

    run(tmp_path, scenario)


def test_transfer_to_business_type_and_to_window(tmp_path: Path) -> None:
    async def scenario(engine: QueueEngine, clock: FakeClock) -> None:
        await engine.issue("social")
        clock.advance(seconds=1)
        await engine.issue("tax")
        await engine.call("1")  # A001
        moved = await engine.transfer("1", to_business_type="tax")
        assert moved.ticket is not None
        assert moved.ticket.status is TicketStatus.WAITING
        assert moved.ticket.number == "A001"  # keeps its number
        first = await engine.call("3")
        assert first.ticket is not None
        assert first.ticket.number == "A001"  # and its place (issued before B001)
        sent = await engine.transfer("3", to_window="1")
        assert sent.event["to_window"] == "1"
        assert await engine.waiting("1") == 1
        again = await engine.call("1")
        assert again.ticket is not None
        assert again.ticket.number == "A001"
        with pytest.raises(ValueError, match="exactly one"):
            await engine.transfer("1")
        with pytest.raises(UnknownWindow):
            await engine.transfer("1", to_window="42")

    run(tmp_path, scenario)


def test_pause_resume_and_evaluate(tmp_path: Path) -> None:
    async def scenario(engine: QueueEngine, clock: FakeClock) -> None:
        await engine.issue("social")
        await engine.pause("1")
        with pytest.raises(WindowPaused):
            await engine.call("1")
        await engine.resume("1")
        await engine.call("1")
        evaluation = await engine.evaluate("1")
        assert evaluation.event["kind"] == "queue.evaluate"
        assert evaluation.event["ticket"] == "A001"
        with pytest.raises(NoCurrentTicket):
            await engine.evaluate("3")

    run(tmp_path, scenario)


def test_every_operation_records_an_event_and_failures_record_none(tmp_path: Path) -> None:
    async def scenario(engine: QueueEngine, clock: FakeClock) -> None:
        before = len(await engine.events_after(0))
        await engine.issue("social")
        await engine.issue("social")
        await engine.call("1")
        await engine.recall("1")
        await engine.hold("1")
        await engine.call_back("1", "A001")
        await engine.skip("1")
        await engine.call("1")
        await engine.transfer("1", to_business_type="tax")
        await engine.pause("3")
        await engine.resume("3")
        with pytest.raises(NoCurrentTicket):
            await engine.skip("2")
        events = await engine.events_after(0)
        kinds = [e["kind"] for _, e in events[before:]]
        assert kinds == [
            "queue.issue",
            "queue.issue",
            "queue.call",
            "queue.recall",
            "queue.hold",
            "queue.call_back",
            "queue.skip",
            "queue.call",
            "queue.transfer",
            "queue.pause",
            "queue.resume",
        ]
        assert len({e["id"] for _, e in events}) == len(events)
        seqs = [s for s, _ in events]
        assert seqs == sorted(seqs)

    run(tmp_path, scenario)


def test_state_survives_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()

    async def first(engine: QueueEngine, clock: FakeClock) -> None:
        for _ in range(3):
            await engine.issue("social")
        await engine.call("1")
        await engine.pause("3")

    async def second(engine: QueueEngine, clock: FakeClock) -> None:
        assert (await engine.issue("social")).ticket.number == "A004"  # type: ignore[union-attr]
        current = await engine.recall("1")
        assert current.ticket is not None
        assert current.ticket.number == "A001"
        with pytest.raises(WindowPaused):
            await engine.call("3")
        assert await engine.waiting("1") == 3
        assert len(await engine.events_after(0)) > 5

    run(tmp_path, first, clock=clock)
    run(tmp_path, second, clock=clock)
    assert (tmp_path / "queue.sqlite3").exists()


def test_apply_windows_is_idempotent_and_retires_removed_windows(tmp_path: Path) -> None:
    """The agent config's windows: same config twice changes nothing; removal retires."""
    clock = FakeClock()
    config = [
        WindowConfig(window="1", business_types=("social",)),
        WindowConfig(window="2", business_types=("social", "tax")),
    ]

    async def main() -> None:
        async with QueueEngine(tmp_path, TYPES, clock=clock) as engine:
            first = await engine.apply_windows(config)
            assert [(e["kind"], e["window"]) for e in first] == [
                ("queue.window_configured", "1"),
                ("queue.window_configured", "2"),
            ]
            await engine.pause("1")
            for _ in range(3):
                await engine.issue("social")  # A001 A002 A003
            await engine.call("2")  # A001 at window 2
            await engine.resume("1")
            await engine.call("1")  # A002 at window 1
            await engine.transfer("1", to_window="2")  # A002 waits for window 2 only
            await engine.pause("1")
            seq = (await engine.events_after(0))[-1][0]
        # a restart with the same config: nothing changes, nothing is recorded
        async with QueueEngine(tmp_path, TYPES, clock=clock) as engine:
            assert await engine.apply_windows(config) == []
            assert await engine.events_after(seq) == []
            snapshot = await engine.snapshot()
            assert [(w.window, w.business_types, w.paused) for w in snapshot.windows] == [
                ("1", ("social",), True),  # the runtime state (paused) is kept
                ("2", ("social", "tax"), False),
            ]
            # window 1 serves tax too now; window 2 is removed from the config
            changed = await engine.apply_windows(
                [WindowConfig(window="1", business_types=("social", "tax"))]
            )
            assert [(e["kind"], e["window"]) for e in changed] == [
                ("queue.window_configured", "1"),
                ("queue.window_retired", "2"),
            ]
            retired = changed[1]
            assert retired["returned_ticket"] == "A001"  # its citizen waits again
            assert retired["released"] == 1  # A002, transferred to window 2
            assert [e for _, e in await engine.events_after(seq)] == changed
            with pytest.raises(UnknownWindow):
                await engine.call("2")
            a001 = await engine.ticket("A001")
            assert a001 is not None
            assert (a001.status, a001.window) == (TicketStatus.WAITING, None)
            a002 = await engine.ticket("A002")
            assert a002 is not None
            assert (a002.status, a002.target_window) == (TicketStatus.WAITING, None)
            # A001 kept its place: it is called first, then A002, then A003
            await engine.resume("1")
            called = [(await engine.call("1")).ticket for _ in range(3)]
            assert [t.number for t in called if t is not None] == ["A001", "A002", "A003"]
            with pytest.raises(UnknownBusinessType):
                await engine.apply_windows([WindowConfig(window="1", business_types=("x",))])
            assert [w.window for w in (await engine.snapshot()).windows] == ["1"]

    asyncio.run(main())
