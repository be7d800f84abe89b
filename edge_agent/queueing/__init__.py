"""The outlet queue (排队叫号): tickets, window operations, announcements and voice.

``QueueEngine`` keeps the state in SQLite in the data dir and returns a ``QueueResult``
(event record, ticket, announcement text, LED payload) for every operation and a
read-only ``snapshot()`` of today's queue;
``render_announcement`` speaks the text to a WAV with espeak-ng. Errors: see
``edge_agent.queueing.errors``.
"""

from edge_agent.queueing.announce import announcement, speech_text
from edge_agent.queueing.appointments import Appointment
from edge_agent.queueing.engine import QueueEngine
from edge_agent.queueing.errors import (
    AppointmentError,
    AppointmentExpired,
    AppointmentNotFound,
    AppointmentUsed,
    AppointmentWrongDay,
    NoCurrentTicket,
    QueueError,
    QueueStoreError,
    TicketNotFound,
    UnknownBusinessType,
    UnknownWindow,
    WindowPaused,
)
from edge_agent.queueing.models import (
    BusinessType,
    LedPayload,
    QueueResult,
    QueueSnapshot,
    Ticket,
    TicketStatus,
    WindowConfig,
    WindowSnapshot,
)
from edge_agent.queueing.voice import VoiceError, render_announcement

__all__ = [
    "Appointment",
    "AppointmentError",
    "AppointmentExpired",
    "AppointmentNotFound",
    "AppointmentUsed",
    "AppointmentWrongDay",
    "BusinessType",
    "LedPayload",
    "NoCurrentTicket",
    "QueueEngine",
    "QueueError",
    "QueueResult",
    "QueueSnapshot",
    "QueueStoreError",
    "Ticket",
    "TicketNotFound",
    "TicketStatus",
    "UnknownBusinessType",
    "UnknownWindow",
    "VoiceError",
    "WindowConfig",
    "WindowPaused",
    "WindowSnapshot",
    "announcement",
    "render_announcement",
    "speech_text",
]
