"""Device kind ``ticket_printer``: the queue-ticket printer (docs/devices/ticket-printer.md)."""

from edge_agent.devices.registry import DeviceKind
from edge_agent.devices.ticket_printer.capability import TicketPrinter
from edge_agent.devices.ticket_printer.driver import EscPosPrinter
from edge_agent.devices.ticket_printer.simulation import simulate
from edge_agent.devices.ticket_printer.simulator import EscPosPrinterSimulator

# mypy --strict proves here that the driver has the kind's capability.
_CHECKED: type[TicketPrinter] = EscPosPrinter

KIND = DeviceKind(
    name="ticket_printer",
    capability=TicketPrinter,
    drivers=(EscPosPrinter,),
    simulators=(EscPosPrinterSimulator,),
    simulate=simulate,
)

__all__ = ["KIND", "TicketPrinter"]
