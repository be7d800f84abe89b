"""``/v1/tickets`` and ``/v1/queue``: take a ticket (取号) and see today's queue.

Issuing is done when the queue engine committed it; printing comes after, so a printer
problem (paper out, cover open, unplugged) never loses the ticket: the answer then has
``printed: false`` and a warning saying what to do, and the clerk reads the number out.
Every issued ticket is also published as ``ticket.issued`` on the event stream, so the
hall display's waiting counts follow the kiosk.
"""

from __future__ import annotations

from datetime import datetime

from edge_agent.devices import DeviceError
from edge_agent.devices.ticket_printer import TicketPrinter
from edge_agent.devices.ticket_printer.commands import PaperState
from edge_agent.devices.ticket_printer.ticket import TicketPrint
from edge_agent.local_api.context import LocalApiContext
from edge_agent.local_api.deps import LocalDep
from edge_agent.local_api.errors import error_responses, from_device_error
from edge_agent.local_api.evaluation_qr import evaluation_link
from edge_agent.local_api.models import QueueStatePublic, TicketCreate, TicketPublic, WarningPublic
from edge_agent.local_api.presenting import publish_hall_event, record, warning_of
from edge_agent.local_api.queue_view import queue_state
from edge_agent.local_api.routing import APIRouter
from edge_agent.queueing import QueueResult
from edge_agent.queueing.keypad_loop import ticket_case_number

__all__ = ["issued_ticket", "router"]

router = APIRouter(tags=["queue"])


def evaluation_url(local: LocalApiContext, day: str, number: str) -> str | None:
    """The 好差评 link of a ticket from the configured template, or None without one."""
    return evaluation_link(local, ticket_case_number(day, number))


async def _print(local: LocalApiContext, job: TicketPrint, warnings: list[WarningPublic]) -> bool:
    printers = local.ready_drivers(TicketPrinter)
    if not printers:
        warnings.append(
            WarningPublic(
                code="no_printer",
                message="no ticket printer is connected; the ticket was not printed",
                hint="tell the citizen the number, or plug the ticket printer in",
            )
        )
        return False
    try:
        status = await printers[0].print_ticket(job)
    except DeviceError as exc:
        warnings.append(warning_of(from_device_error(exc)))
        return False
    if status.paper is PaperState.NEAR_END:
        warnings.append(
            WarningPublic(
                code="paper_low",
                message="the ticket printer's paper roll is nearly empty",
                hint="load a new paper roll soon",
            )
        )
    return True


async def issued_ticket(
    local: LocalApiContext, result: QueueResult, *, print_it: bool
) -> TicketPublic:
    """Record, print and publish a ticket the queue engine has just issued."""
    ticket = result.ticket
    assert ticket is not None  # issue() always returns its ticket
    warnings: list[WarningPublic] = []
    tx_id = await record(local, result, warnings)
    name = local.runtime.queue.types[ticket.business_type].name
    priority = int(result.event.get("priority", 0))
    appointment = result.event.get("appointment")
    url = evaluation_url(local, ticket.day, ticket.number)
    printed = False
    if print_it:
        issued = datetime.fromisoformat(ticket.issued_at) if ticket.issued_at else datetime.now()
        job = TicketPrint(
            outlet_name=local.options.outlet_name or local.runtime.outlet_id,
            ticket_number=ticket.number,
            business_name=f"{name}(预约)" if appointment else name,
            waiting=result.waiting,
            issued_at=issued,
            qr_url=url or "",
        )
        printed = await _print(local, job, warnings)
    publish_hall_event(
        local,
        "ticket.issued",
        {
            "ticket": ticket.number,
            "business_type": ticket.business_type,
            "waiting": result.waiting,
            "priority": priority,
        },
    )
    return TicketPublic(
        number=ticket.number,
        business_type=ticket.business_type,
        business_name=name,
        waiting=result.waiting,
        issued_at=ticket.issued_at,
        printed=printed,
        tx_id=tx_id,
        priority=priority,
        appointment=str(appointment) if appointment else None,
        evaluation_url=url,
        warnings=warnings,
    )


@router.post(
    "/tickets",
    response_model=TicketPublic,
    status_code=201,
    responses=error_responses(404, 409, 503),
)
async def issue_ticket(request: TicketCreate, local: LocalDep) -> TicketPublic:
    """Issue the next ticket of a business type and print it on the ticket printer."""
    result = await local.runtime.queue.issue(request.business_type)
    return await issued_ticket(local, result, print_it=request.print)


@router.get("/queue", response_model=QueueStatePublic, responses=error_responses(503))
async def get_queue(local: LocalDep) -> QueueStatePublic:
    """Today's business types and windows: who is at each window, how many wait."""
    return await queue_state(local.runtime.queue)
