"""``WS /v1/events``: device and transaction events as JSON, one message per event.

Authentication is in the handshake (``security.LocalGuard``): the browser offers the
subprotocols ``govedge.v1`` and ``bearer.TOKEN``; the server picks ``govedge.v1``.
Messages: ``{"type": "event", "name", "device_id", "severity", "data", "ts"}`` (names
such as ``card.read``, ``rating.given``, ``device.unplugged``, ``paper.low``,
``transaction.result``) and ``{"type": "ping"}`` after ``ws_ping_s`` of silence. Event
data never holds personal data (drivers mask it); a slow client loses its oldest
events, counted in the next message's ``dropped``. A hall display or kiosk app is sent
the queue events only (``window.*``, ``ticket.*``; ``roles.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from edge_agent.devices import DeviceEvent
from edge_agent.discovery import Subscription
from edge_agent.local_api.deps import LocalDep
from edge_agent.local_api.roles import DEFAULT_ROLE, sees_event
from edge_agent.local_api.routing import APIRouter
from edge_agent.local_api.security import WS_SUBPROTOCOL

router = APIRouter(tags=["events"])


def event_message(event: DeviceEvent, *, dropped: int = 0) -> dict[str, Any]:
    """The JSON message of one event."""
    message: dict[str, Any] = {
        "type": "event",
        "name": event.name,
        "device_id": event.device_id,
        "severity": event.severity,
        "data": dict(event.data),
        "ts": event.ts,
    }
    if dropped:
        message["dropped"] = dropped
    return message


async def _next(subscriptions: tuple[Subscription, ...], *, timeout_s: float) -> list[DeviceEvent]:
    """The events queued on any of ``subscriptions``, waiting up to ``timeout_s`` for one."""
    ready = [e for s in subscriptions if (e := s.get_nowait()) is not None]
    if ready:
        return ready
    getters = [asyncio.ensure_future(s.queue.get()) for s in subscriptions]
    try:
        await asyncio.wait(getters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for getter in getters:
            getter.cancel()  # a queue's get gives up its item only when it completed
    return [g.result() for g in getters if g.done() and not g.cancelled()]


async def _pump(
    websocket: WebSocket, subscriptions: tuple[Subscription, ...], ping_s: float, role: str
) -> None:
    reported = 0
    while True:
        events = await _next(subscriptions, timeout_s=ping_s)
        if not events:
            await websocket.send_text('{"type":"ping"}')
            continue
        for event in events:
            if not sees_event(role, event.name):
                continue  # a hall screen gets queue events only (roles.py)
            total = sum(s.dropped for s in subscriptions)
            dropped, reported = total - reported, total
            message = event_message(event, dropped=dropped)
            await websocket.send_text(json.dumps(message, ensure_ascii=False, default=str))


async def _until_closed(websocket: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.receive_text()  # clients send nothing we act on


@router.websocket("/events")
async def events(websocket: WebSocket, local: LocalDep) -> None:
    """Stream every device and transaction event from now on until the client leaves."""
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol=WS_SUBPROTOCOL if WS_SUBPROTOCOL in offered else None)
    # Device events and transaction events are two hubs; the client sees one stream.
    subscriptions = (
        local.runtime.events.subscribe(maxsize=local.options.ws_queue_size),
        local.runtime.transactions.subscribe(maxsize=local.options.ws_queue_size),
    )
    try:
        role = str(websocket.scope.get("state", {}).get("clerk_app_role", DEFAULT_ROLE))
        pump = asyncio.create_task(_pump(websocket, subscriptions, local.options.ws_ping_s, role))
        closed = asyncio.create_task(_until_closed(websocket))
        done, pending = await asyncio.wait({pump, closed}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            exc = task.exception()
            if exc is not None and not isinstance(exc, WebSocketDisconnect | RuntimeError):
                raise exc
    finally:
        for subscription in subscriptions:
            subscription.close()
