"""``Annotated`` dependencies of the local API's routes (the FastAPI template's ``deps.py``).

Authentication itself happens in ``security.LocalGuard`` before routing (it must also
cover WebSockets and CORS preflights); ``bearer_scheme`` only declares the scheme so
``/openapi.json`` shows that every operation needs ``Authorization: Bearer TOKEN``.
"""

from __future__ import annotations

from typing import Annotated

from starlette.requests import HTTPConnection

from edge_agent.local_api.context import LocalApiContext
from edge_agent.local_api.routing import Depends, Header, HTTPBearer
from edge_agent.runtime import AgentRuntime

__all__ = ["IdempotencyKeyDep", "LocalDep", "RuntimeDep", "bearer_scheme"]

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="The clerk app's token from 'edge-agent apps add' (checked before routing).",
)


def get_local(connection: HTTPConnection) -> LocalApiContext:
    """The app's ``LocalApiContext``."""
    local: LocalApiContext = connection.app.state.local
    return local


def get_runtime(connection: HTTPConnection) -> AgentRuntime:
    """The agent runtime the app was built with."""
    return get_local(connection).runtime


LocalDep = Annotated[LocalApiContext, Depends(get_local)]
RuntimeDep = Annotated[AgentRuntime, Depends(get_runtime)]
IdempotencyKeyDep = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=r"^[A-Za-z0-9_-]{8,64}$",
        description="Becomes the transaction id; send the same key again to retry safely.",
        examples=["case-2024-05-01-0001"],
    ),
]
