"""Fan-out of device events to any number of listeners (local API WebSocket, MQTT session).

Each subscriber has its own bounded queue; a slow subscriber loses its oldest events
(counted in ``dropped``) instead of stalling the device manager or the other listeners.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Self

from edge_agent.devices import DeviceEvent

log = logging.getLogger(__name__)


class Subscription:
    """One listener's queue of ``DeviceEvent``; close it (or use ``async with``) when done."""

    def __init__(self, hub: EventHub, *, maxsize: int) -> None:
        self._hub = hub
        self.queue: asyncio.Queue[DeviceEvent] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0

    async def get(self, *, timeout_s: float) -> DeviceEvent:
        """The next event; ``TimeoutError`` if none arrives within ``timeout_s`` seconds."""
        async with asyncio.timeout(timeout_s):
            return await self.queue.get()

    def get_nowait(self) -> DeviceEvent | None:
        """The next event if one is queued, else None."""
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def close(self) -> None:
        """Stop receiving events."""
        self._hub.unsubscribe(self)

    def _offer(self, event: DeviceEvent) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventHub:
    """Delivers each published event to every open subscription (on the loop thread)."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []

    def subscribe(self, *, maxsize: int = 256) -> Subscription:
        """A new subscription that receives every event published from now on."""
        subscription = Subscription(self, maxsize=maxsize)
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Remove ``subscription``; safe to call twice."""
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def publish(self, event: DeviceEvent) -> None:
        """Queue ``event`` for every subscriber, dropping a slow one's oldest event."""
        log.debug("device event %s from %s", event.name, event.device_id)
        for subscription in list(self._subscriptions):
            subscription._offer(event)
