"""The ESC/POS printer driver against its simulator, over a real pty and a real TCP socket."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

import pytest

from edge_agent.devices import DeviceEvent, DeviceIdentity, DeviceRefused, DeviceTimeout
from edge_agent.devices.ticket_printer.commands import (
    EscPos,
    PaperState,
    paper_from_dle_eot4,
    paper_from_gs_r1,
)
from edge_agent.devices.ticket_printer.driver import EscPosPrinter
from edge_agent.devices.ticket_printer.simulator import EscPosPrinterSimulator
from edge_agent.devices.ticket_printer.ticket import TicketPrint

TRANSPORTS = ["pty", "tcp"]
TICKET = TicketPrint(
    outlet_name="定海区城东街道便民服务中心",
    ticket_number="A012",
    business_name="社保医保",
    waiting=3,
    issued_at=datetime(2024, 5, 1, 9, 30, 0),
    qr_url="https://example.invalid/q/A012",
)

Scenario = Callable[[EscPosPrinter, EscPosPrinterSimulator], Awaitable[None]]


def run(transport: str, scenario: Scenario, *, events: list[DeviceEvent] | None = None) -> None:
    """Start a simulator, open a driver on it, run ``scenario``."""

    async def main() -> None:
        async with EscPosPrinterSimulator(transport=transport) as sim:
            identity = DeviceIdentity(
                device_id="prn-1", profile="sim", kind="ticket_printer", address=sim.address
            )
            printer = EscPosPrinter(
                identity,
                settings={"status_timeout": 0.3, "job_timeout": 0.5},
                on_event=events.append if events is not None else None,
            )
            async with printer:
                async with asyncio.timeout(10):
                    await scenario(printer, sim)

    asyncio.run(main())


def test_status_layouts_are_not_mixed() -> None:
    assert paper_from_dle_eot4(0x12) is PaperState.OK
    assert paper_from_dle_eot4(0x1E) is PaperState.NEAR_END
    assert paper_from_dle_eot4(0x7E) is PaperState.END
    assert paper_from_gs_r1(0x00) is PaperState.OK
    assert paper_from_gs_r1(0x03) is PaperState.NEAR_END
    assert paper_from_gs_r1(0x0F) is PaperState.END
    with pytest.raises(ValueError, match="not a DLE EOT"):
        paper_from_dle_eot4(0x0F)


def test_builder_rejects_text_outside_gb18030_control_chars() -> None:
    with pytest.raises(ValueError, match="control"):
        EscPos().text("a\x1bb")
    assert EscPos().init().chinese().line("你好").cut().build() == (
        b"\x1b@\x1c&" + "你好".encode("gb18030") + b"\n\x1dV\x00"
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_prints_a_ticket_and_cuts(transport: str) -> None:
    async def scenario(printer: EscPosPrinter, sim: EscPosPrinterSimulator) -> None:
        probe = await printer.probe()
        assert probe.details["paper"] == "ok"
        await printer.print_ticket(TICKET)
        assert sim.cuts == ["partial"]
        ticket = sim.tickets[0]
        assert "定海区城东街道便民服务中心" in ticket
        assert "A012" in ticket
        assert "前面还有 3 人等候" in ticket
        assert "2024-05-01 09:30:00" in ticket
        assert sim.qr_codes == ["https://example.invalid/q/A012"]
        assert sim.chinese_mode
        assert sim.unknown_commands == 0
        health = await printer.health()
        assert health["prints_ok"] == 1
        assert health["paper"] == "ok"

    run(transport, scenario)


@pytest.mark.parametrize(
    ("fault", "code"),
    [("paper_end", "paper_out"), ("cover", "cover_open"), ("cutter", "cutter_error")],
)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_faults_refuse_with_a_hint_and_print_nothing(transport: str, fault: str, code: str) -> None:
    async def scenario(printer: EscPosPrinter, sim: EscPosPrinterSimulator) -> None:
        if fault == "paper_end":
            sim.paper = "end"
        elif fault == "cover":
            sim.cover_open = True
        else:
            sim.cutter_error = True
        with pytest.raises(DeviceRefused) as info:
            await printer.print_ticket(TICKET)
        assert info.value.code == code
        assert info.value.hint
        assert sim.lines == []
        assert sim.cuts == []
        assert (await printer.health())["prints_failed"] == 1

    run(transport, scenario)


def test_status_bits_for_out_of_paper() -> None:
    async def scenario(printer: EscPosPrinter, sim: EscPosPrinterSimulator) -> None:
        sim.paper = "end"
        status = await printer.status()
        assert status.paper is PaperState.END
        assert status.paper_stop
        assert status.offline
        assert sim.dle_eot_reply(4) == 0x7E
        assert sim.dle_eot_reply(2) == 0x32
        assert sim.gs_r1_reply() == 0x0F

    run("pty", scenario)


def test_near_end_prints_and_warns() -> None:
    events: list[DeviceEvent] = []

    async def scenario(printer: EscPosPrinter, sim: EscPosPrinterSimulator) -> None:
        sim.paper = "near_end"
        await printer.print_ticket(TICKET)
        assert sim.cuts == ["partial"]
        assert (await printer.health())["paper"] == "near_end"

    run("tcp", scenario, events=events)
    assert any(e.name == "paper.low" for e in events)


def test_paper_runs_out_during_the_job() -> None:
    async def scenario(printer: EscPosPrinter, sim: EscPosPrinterSimulator) -> None:
        sim.paper_end_after_lines = 3
        with pytest.raises(DeviceRefused, match="during the print") as info:
            await printer.print_ticket(TICKET)
        assert info.value.code == "paper_out"
        assert len(sim.lines) == 3
        assert sim.cuts == []

    run("pty", scenario)


def test_printer_stops_answering_mid_job() -> None:
    async def scenario(printer: EscPosPrinter, sim: EscPosPrinterSimulator) -> None:
        sim.answer_limit = 4  # the four DLE EOT before the job, then nothing
        with pytest.raises(DeviceTimeout, match="GS r 1"):
            await printer.print_ticket(TICKET)
        assert (await printer.health())["prints_failed"] == 1

    run("pty", scenario)


def test_silent_printer_fails_the_probe() -> None:
    async def scenario(printer: EscPosPrinter, sim: EscPosPrinterSimulator) -> None:
        sim.silent = True
        with pytest.raises(DeviceTimeout, match="DLE EOT 1"):
            await printer.probe()

    run("tcp", scenario)
