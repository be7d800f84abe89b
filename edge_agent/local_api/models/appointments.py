"""Wire shapes of ``/v1/appointments``: loading the day's bookings, checking one in."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from edge_agent.local_api.models.common import StrictIn, examples
from edge_agent.queueing.appointments import SLOT
from govedge_wire.transactions import Code

__all__ = ["AppointmentCreate", "AppointmentsCreate", "AppointmentsLoaded", "CheckInCreate"]

Reference = Field(min_length=4, max_length=40, pattern=r"^[A-Za-z0-9-]+$")


class AppointmentCreate(StrictIn):
    """One booking of the provincial app: no name or ID number, only the booking."""

    reference: str = Reference
    day: date
    business_type: Code
    priority: int = Field(default=1, ge=1, le=9)
    # "HH:MM-HH:MM" in outlet-local time, or "" for the whole day; the booking expires
    # (a no-show) at the slot's end plus the agent's grace period.
    slot: str = Field(default="", pattern=SLOT.pattern)


class AppointmentsCreate(StrictIn):
    """Bookings to add or update (by reference); one already checked in is left alone."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "appointments": [
                        {"reference": "YY20240501-0007", "day": "2024-05-01",
                         "business_type": "social", "priority": 1, "slot": "09:00-09:30"}
                    ]
                }
            ]
        },
    )  # fmt: skip

    appointments: list[AppointmentCreate] = Field(min_length=1, max_length=5000)


class AppointmentsLoaded(BaseModel):
    """How many bookings were sent and how many of them were new."""

    model_config = examples({"received": 12, "added": 10})

    received: int
    added: int


class CheckInCreate(StrictIn):
    """The booking code the citizen entered or scanned at the kiosk."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"examples": [{"reference": "YY20240501-0007"}]},
    )

    reference: str = Field(min_length=1, max_length=64)
    print: bool = True
