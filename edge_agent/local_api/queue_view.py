"""A read-only view of today's queue for ``GET /v1/queue``, from ``QueueEngine.snapshot``."""

from __future__ import annotations

from edge_agent.local_api.models import (
    AppointmentCountsPublic,
    BusinessTypePublic,
    QueueStatePublic,
    WindowPublic,
)
from edge_agent.queueing import QueueEngine

__all__ = ["queue_state"]


async def queue_state(engine: QueueEngine) -> QueueStatePublic:
    """Today's business types and windows with their waiting counts."""
    snapshot = await engine.snapshot()
    return QueueStatePublic(
        day=snapshot.day,
        business_types=[
            BusinessTypePublic(
                code=b.code, prefix=b.prefix, name=b.name, waiting=snapshot.waiting.get(b.code, 0)
            )
            for b in engine.types.values()
        ],
        windows=[
            WindowPublic(
                window=w.window,
                business_types=list(w.business_types),
                paused=w.paused,
                current_ticket=w.current_ticket,
                waiting=w.waiting,
            )
            for w in snapshot.windows
        ],
        appointments=AppointmentCountsPublic(
            booked=snapshot.appointments.booked,
            checked_in=snapshot.appointments.checked_in,
            expired=snapshot.appointments.expired,
        ),
    )
