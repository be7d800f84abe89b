"""Errors of the queue engine.

Exception tree::

    QueueError                 a window operation cannot be done; the message says why
    ├── UnknownBusinessType    no business type with that code is configured
    ├── UnknownWindow          the window was never configured
    ├── WindowPaused           the window is paused; resume it first
    ├── NoCurrentTicket        recall/skip/hold/transfer/evaluate with nobody at the window
    ├── TicketNotFound         call-back of a ticket that is not held or skipped today
    ├── AppointmentError       an appointment check-in refused (``appointments.py``)
    │   ├── AppointmentNotFound    no appointment has that reference
    │   ├── AppointmentWrongDay    it is booked for a later day
    │   ├── AppointmentExpired     a no-show: its slot ended (plus grace) before check-in
    │   └── AppointmentUsed        it was already checked in
    └── QueueStoreError        the SQLite state cannot be read or written
"""

from __future__ import annotations


class QueueError(Exception):
    """A queue operation failed; nothing was changed."""


class UnknownBusinessType(QueueError):
    """No business type with that code is configured."""


class UnknownWindow(QueueError):
    """The window was never configured."""


class WindowPaused(QueueError):
    """The window is paused and cannot call."""


class NoCurrentTicket(QueueError):
    """The window serves nobody right now."""


class TicketNotFound(QueueError):
    """The ticket is not held or skipped today."""


class AppointmentError(QueueError):
    """An appointment check-in was refused; nothing was changed."""


class AppointmentNotFound(AppointmentError):
    """No appointment has that reference (mistyped, or not loaded for today)."""


class AppointmentWrongDay(AppointmentError):
    """The appointment is booked for a later day."""


class AppointmentExpired(AppointmentError):
    """A no-show: the slot's end plus the grace period (or the booked day) has passed."""


class AppointmentUsed(AppointmentError):
    """The appointment was already checked in; its ticket was issued then."""


class QueueStoreError(QueueError):
    """The queue database failed; the operation was rolled back."""
