"""``/v1/appointments``: the day's bookings (预约) and checking one in at the kiosk.

The clerk app loads the bookings it fetched from the provincial platform (``POST
/v1/appointments``, a clerk app only); the kiosk checks one in with the booking code
(``POST /v1/appointments/check-in``, a ``kiosk`` app may): the answer is the ticket,
issued with the booking's priority and printed like any other. A refused check-in (no
such code, another day, already used) changes nothing, is counted in the local API's
refusal counters (``checkin_<code>``) and says what the citizen can do instead.
"""

from __future__ import annotations

from edge_agent.local_api.deps import LocalDep
from edge_agent.local_api.errors import error_responses, from_queue_error
from edge_agent.local_api.models import (
    AppointmentsCreate,
    AppointmentsLoaded,
    CheckInCreate,
    TicketPublic,
)
from edge_agent.local_api.routes.queue import issued_ticket
from edge_agent.local_api.routing import APIRouter
from edge_agent.queueing import Appointment, AppointmentError

router = APIRouter(prefix="/appointments", tags=["queue"])


@router.post(
    "",
    response_model=AppointmentsLoaded,
    responses=error_responses(404, 503),
)
async def load_appointments(request: AppointmentsCreate, local: LocalDep) -> AppointmentsLoaded:
    """Add or update bookings (all or none: an unknown business type refuses the lot)."""
    bookings = [
        Appointment(
            reference=a.reference,
            day=a.day,
            business_type=a.business_type,
            priority=a.priority,
            slot=a.slot,
        )
        for a in request.appointments
    ]
    added = await local.runtime.queue.load_appointments(bookings)
    return AppointmentsLoaded(received=len(bookings), added=added)


@router.post(
    "/check-in",
    response_model=TicketPublic,
    status_code=201,
    responses=error_responses(404, 409, 503),
)
async def check_in(request: CheckInCreate, local: LocalDep) -> TicketPublic:
    """Check a booking in: its ticket, called before walk-in tickets, printed."""
    try:
        result = await local.runtime.queue.check_in(request.reference)
    except AppointmentError as exc:
        error = from_queue_error(exc)
        local.refused(f"checkin_{error.code}")
        raise error from exc
    return await issued_ticket(local, result, print_it=request.print)
