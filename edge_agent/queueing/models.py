"""Value objects of the queue: business types, tickets, and what an operation produced."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

_PREFIX = re.compile(r"^[A-Z]$")


@dataclass(frozen=True, slots=True, kw_only=True)
class BusinessType:
    """A queue: its code, the one-letter ticket prefix and the name printed on tickets."""

    code: str
    prefix: str
    name: str

    def __post_init__(self) -> None:
        if not _PREFIX.match(self.prefix):
            raise ValueError(f"prefix must be one capital letter, got {self.prefix!r}")
        if not self.code:
            raise ValueError("business type code must not be empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowConfig:
    """A window as the agent's config declares it: what it serves and its devices.

    ``pad``, ``led`` and ``keypad`` are stable device ids (None: none declared); the LED
    controller and the keypad bus are shared by several windows, so each comes with this
    window's bus address on it.
    """

    window: str
    business_types: tuple[str, ...]
    pad: str | None = None
    led: str | None = None
    led_address: int | None = None
    keypad: str | None = None
    keypad_address: int | None = None

    def __post_init__(self) -> None:
        if not self.window:
            raise ValueError("window must not be empty")
        if not self.business_types:
            raise ValueError(f"window {self.window} must serve at least one business type")


class TicketStatus(Enum):
    """Where a ticket is in its life."""

    WAITING = "waiting"
    CALLED = "called"  # at a window now
    HELD = "held"  # 挂起
    SKIPPED = "skipped"  # 弃号
    DONE = "done"


@dataclass(frozen=True, slots=True, kw_only=True)
class Ticket:
    """One ticket of one day; ``number`` is prefix + three digits (A012)."""

    day: str
    number: str
    business_type: str
    status: TicketStatus
    window: str | None = None
    target_window: str | None = None
    issued_at: str = ""
    calls: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class LedPayload:
    """What a window's LED strip shows: ticket, window and waiting count (3 digits)."""

    window: str
    ticket: str | None
    waiting: int

    @property
    def lines(self) -> tuple[str, str]:
        """The two strip lines, GB2312-safe: ``请A012号到3号窗口`` and ``等候人数:005``."""
        first = f"请{self.ticket}号到{self.window}号窗口" if self.ticket else f"{self.window}号窗口"
        return first, f"等候人数:{min(self.waiting, 999):03d}"


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueResult:
    """The outcome of one operation: the ticket, the event record and what to show/say."""

    event: dict[str, Any]
    ticket: Ticket | None = None
    announcement: str | None = None
    led: LedPayload | None = None
    waiting: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowSnapshot:
    """One window as it is now: the business types it serves, its ticket, who waits for it."""

    window: str
    business_types: tuple[str, ...]
    paused: bool
    current_ticket: str | None  # the number at the window (A012), None if it serves nobody
    waiting: int  # tickets of today this window could call next


@dataclass(frozen=True, slots=True, kw_only=True)
class AppointmentCounts:
    """Today's bookings: loaded, checked in, and no-shows that have expired."""

    booked: int = 0
    checked_in: int = 0
    expired: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueSnapshot:
    """A read-only view of today's queue, taken in one transaction (consistent)."""

    day: str  # the outlet-local day (ISO date)
    waiting: Mapping[str, int]  # business type code → tickets waiting (every type listed)
    windows: tuple[WindowSnapshot, ...]  # ordered by window name
    appointments: AppointmentCounts = AppointmentCounts()
