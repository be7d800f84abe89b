"""Wire shapes of ``/v1/tickets`` (issuing a ticket) and ``/v1/queue`` (today's queue:
business types, windows, who waits).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from edge_agent.local_api.models.common import StrictIn, WarningPublic, examples
from govedge_wire.transactions import Code

__all__ = [
    "AppointmentCountsPublic",
    "BusinessTypePublic",
    "QueueStatePublic",
    "TicketCreate",
    "TicketInfo",
    "TicketPublic",
    "WindowPublic",
]


class TicketCreate(StrictIn):
    """Issue a ticket of one business type (codes: ``GET /v1/queue``)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"examples": [{"business_type": "social"}]}
    )

    business_type: Code
    print: bool = True


class TicketInfo(BaseModel):
    """One ticket of today."""

    number: str
    business_type: str
    status: str
    window: str | None = None
    issued_at: str = ""
    calls: int = 0


class TicketPublic(BaseModel):
    """The issued ticket, how many wait before it, and whether it was printed.

    ``priority`` > 0 and ``appointment`` (the booking code) for an appointment's ticket;
    ``evaluation_url`` is the 好差评 link printed as a QR code when the outlet has one.
    """

    model_config = examples(
        {
            "number": "A012",
            "business_type": "social",
            "business_name": "社保医保",
            "waiting": 5,
            "issued_at": "2024-05-01T09:00:00+08:00",
            "printed": False,
            "tx_id": "5b0c7d1e2f3a4b5c6d7e8f9a0b1c2d3e",
            "warnings": [
                {
                    "code": "paper_out",
                    "message": "printer is out of paper",
                    "hint": "load a new paper roll and close the cover",
                }
            ],
        }
    )

    number: str
    business_type: str
    business_name: str
    waiting: int
    issued_at: str
    printed: bool
    tx_id: str | None
    priority: int = 0
    appointment: str | None = None
    evaluation_url: str | None = None
    warnings: list[WarningPublic] = Field(default_factory=list)


class BusinessTypePublic(BaseModel):
    """One queue: code, ticket prefix, name."""

    code: str
    prefix: str
    name: str
    waiting: int


class WindowPublic(BaseModel):
    """One window: what it serves, whether it is paused, who is at it, who waits."""

    window: str
    business_types: list[str]
    paused: bool
    current_ticket: str | None
    waiting: int


class AppointmentCountsPublic(BaseModel):
    """Today's bookings: loaded, checked in, and no-shows expired (slot end + grace)."""

    booked: int
    checked_in: int
    expired: int


class QueueStatePublic(BaseModel):
    """Today's queue at this outlet."""

    model_config = examples(
        {
            "day": "2024-05-01",
            "business_types": [{"code": "social", "prefix": "A", "name": "社保医保", "waiting": 4}],
            "windows": [{"window": "3", "business_types": ["social"], "paused": False,
                         "current_ticket": "A012", "waiting": 4}],
            "appointments": {"booked": 12, "checked_in": 7, "expired": 2},
        }
    )  # fmt: skip

    day: str
    business_types: list[BusinessTypePublic]
    windows: list[WindowPublic]
    appointments: AppointmentCountsPublic
