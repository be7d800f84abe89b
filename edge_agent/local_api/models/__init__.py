"""Wire shapes of the local API: ``…Create`` is what the clerk app sends, ``…Public`` what
it gets back, one module per route group. They are never the driver's or the outbox's
own types, so those can change without breaking a clerk app; examples here are what
``/openapi.json`` shows.
"""

from __future__ import annotations

from edge_agent.local_api.models.appointments import (
    AppointmentCreate,
    AppointmentsCreate,
    AppointmentsLoaded,
    CheckInCreate,
)
from edge_agent.local_api.models.cards import (
    CardReadCreate,
    IdCardPublic,
    SocialSecurityCardPublic,
    SocialSecurityReadCreate,
)
from edge_agent.local_api.models.common import DeviceId, WarningPublic
from edge_agent.local_api.models.devices import DeviceList, DevicePublic
from edge_agent.local_api.models.documents import DocumentCaptureCreate, DocumentPublic
from edge_agent.local_api.models.evaluations import (
    DefaultRatingPublic,
    EvaluationCreate,
    EvaluationPublic,
    EvaluationQrPublic,
)
from edge_agent.local_api.models.queue import (
    AppointmentCountsPublic,
    BusinessTypePublic,
    QueueStatePublic,
    TicketCreate,
    TicketInfo,
    TicketPublic,
    WindowPublic,
)
from edge_agent.local_api.models.submissions import (
    ApplicantCreate,
    MaterialCreate,
    SubmissionAccepted,
    SubmissionCreate,
)
from edge_agent.local_api.models.transactions import TransactionPublic
from edge_agent.local_api.models.windows import (
    AnnouncementPublic,
    CallBackCreate,
    LedPublic,
    TransferCreate,
    WindowResultPublic,
)

__all__ = [
    "AnnouncementPublic",
    "ApplicantCreate",
    "AppointmentCountsPublic",
    "AppointmentCreate",
    "AppointmentsCreate",
    "AppointmentsLoaded",
    "BusinessTypePublic",
    "CallBackCreate",
    "CardReadCreate",
    "CheckInCreate",
    "DefaultRatingPublic",
    "DeviceId",
    "DeviceList",
    "DevicePublic",
    "DocumentCaptureCreate",
    "DocumentPublic",
    "EvaluationCreate",
    "EvaluationPublic",
    "EvaluationQrPublic",
    "IdCardPublic",
    "LedPublic",
    "MaterialCreate",
    "QueueStatePublic",
    "SocialSecurityCardPublic",
    "SocialSecurityReadCreate",
    "SubmissionAccepted",
    "SubmissionCreate",
    "TicketCreate",
    "TicketInfo",
    "TicketPublic",
    "TransactionPublic",
    "TransferCreate",
    "WarningPublic",
    "WindowPublic",
    "WindowResultPublic",
]
