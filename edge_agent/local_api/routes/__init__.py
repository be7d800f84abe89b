"""One router per resource of the local API; ``v1_router`` mounts them all under ``/v1``."""

from edge_agent.local_api.deps import bearer_scheme
from edge_agent.local_api.routes import (
    announcements,
    appointments,
    cards,
    devices,
    documents,
    evaluations,
    events,
    queue,
    submissions,
    transactions,
    windows,
)
from edge_agent.local_api.routing import APIRouter, Depends

__all__ = ["v1_router"]

v1_router = APIRouter(prefix="/v1")
for module in (
    devices,
    cards,
    documents,
    evaluations,
    queue,
    appointments,
    windows,
    announcements,
    submissions,
    transactions,
):
    # Declares the bearer scheme in OpenAPI; the check itself is security.LocalGuard's.
    v1_router.include_router(module.router, dependencies=[Depends(bearer_scheme)])
v1_router.include_router(events.router)  # WebSocket: token in the subprotocol
