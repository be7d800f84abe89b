"""The queue ticket as printed: what it says and its ESC/POS layout."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from edge_agent.devices.ticket_printer.commands import Align, EscPos


@dataclass(frozen=True, slots=True, kw_only=True)
class TicketPrint:
    """One queue ticket; no personal data is ever printed on it."""

    outlet_name: str
    ticket_number: str  # e.g. A012
    business_name: str
    waiting: int
    issued_at: datetime
    qr_url: str = ""
    footer: str = "请留意叫号，过号请重新取号"  # noqa: RUF001 - Chinese punctuation


def render_ticket(ticket: TicketPrint, *, encoding: str = "gb18030", feed_lines: int = 4) -> bytes:
    """The full job: init, Chinese mode, centred lines, big number, optional QR, cut."""
    job = (
        EscPos(encoding=encoding)
        .init()
        .chinese()
        .align(Align.CENTER)
        .bold()
        .line(ticket.outlet_name)
        .bold(on=False)
        .line(ticket.business_name)
        .size(3, 3)
        .line(ticket.ticket_number)
        .size()
        .line(f"前面还有 {ticket.waiting} 人等候")
        .line(ticket.issued_at.strftime("%Y-%m-%d %H:%M:%S"))
    )
    if ticket.qr_url:
        job.qr(ticket.qr_url)
    if ticket.footer:
        job.line(ticket.footer)
    return job.feed(feed_lines).cut(partial=True).build()


def render_self_test(
    device_id: str, printed_at: datetime, *, encoding: str = "gb18030", feed_lines: int = 4
) -> bytes:
    """The technician's test print: says what it is, which device and when, then cuts."""
    return (
        EscPos(encoding=encoding)
        .init()
        .chinese()
        .align(Align.CENTER)
        .bold()
        .line("设备自检 SELF-TEST")
        .bold(on=False)
        .line(device_id[:48])
        .line(printed_at.strftime("%Y-%m-%d %H:%M:%S"))
        .feed(feed_lines)
        .cut(partial=True)
        .build()
    )
