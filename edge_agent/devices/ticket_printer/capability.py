"""What the local API and the queue may ask of the queue-ticket printer."""

from __future__ import annotations

from typing import Protocol

from edge_agent.devices.ticket_printer.commands import PrinterStatus
from edge_agent.devices.ticket_printer.ticket import TicketPrint


class TicketPrinter(Protocol):
    """The capability of kind ``ticket_printer``; its drivers satisfy it."""

    @property
    def device_id(self) -> str:
        """The stable id discovery gave the device."""
        ...

    async def print_ticket(self, ticket: TicketPrint) -> PrinterStatus:
        """Print one queue ticket; the printer's status afterwards."""
        ...
