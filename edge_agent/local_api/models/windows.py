"""Wire shapes of ``/v1/windows/{window}/…``: a window's operations (call, transfer,
call back...) and what each did: the ticket, the hall announcement, the LED strip.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge_agent.local_api.models.common import StrictIn, WarningPublic, examples
from edge_agent.local_api.models.queue import TicketInfo
from govedge_wire.transactions import Code, Short

__all__ = [
    "AnnouncementPublic",
    "CallBackCreate",
    "LedPublic",
    "TransferCreate",
    "WindowResultPublic",
]


class TransferCreate(StrictIn):
    """Where the current ticket goes: another business type or another window."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"examples": [{"to_window": "5"}]}
    )

    to_business_type: Code | None = None
    to_window: Short | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> TransferCreate:
        if (self.to_business_type is None) == (self.to_window is None):
            raise ValueError("give exactly one of to_business_type and to_window")
        return self


class CallBackCreate(StrictIn):
    """Which held or skipped ticket of today to call back (回呼)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"examples": [{"ticket": "A012"}]}
    )

    ticket: Annotated[str, Field(pattern=r"^[A-Z][0-9]{3}$")]


class AnnouncementPublic(BaseModel):
    """The hall announcement: its text, and a WAV to play (None if voice failed)."""

    text: str
    audio_url: str | None


class LedPublic(BaseModel):
    """What the window's LED strip shows, and whether it was shown."""

    lines: list[str]
    shown: bool


class WindowResultPublic(BaseModel):
    """The outcome of one window operation."""

    model_config = examples(
        {
            "operation": "call",
            "window": "3",
            "ticket": {"number": "A012", "business_type": "social", "status": "called",
                       "window": "3", "issued_at": "2024-05-01T09:00:00+08:00", "calls": 1},
            "waiting": 4,
            "announcement": {"text": "请A012号到3号窗口办理业务",
                             "audio_url": "/v1/announcements/0f1e2d3c4b5a69788796a5b4c3d2e1f0.wav"},
            "led": {"lines": ["请A012号到3号窗口", "等候人数:004"], "shown": True},
            "tx_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "warnings": [],
        }
    )  # fmt: skip

    operation: str
    window: str
    ticket: TicketInfo | None
    waiting: int
    announcement: AnnouncementPublic | None
    led: LedPublic | None
    tx_id: str | None = Field(description="null if the outbox could not take it (see warnings)")
    warnings: list[WarningPublic] = Field(default_factory=list)
