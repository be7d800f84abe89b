"""Update statuses on the agent's current connection, and the new version's health proof.

A status waits (bounded) for a connection whose birth is out, and counts as sent only
when the broker acknowledged it (QoS 1). The health proof (docs/updates.md, step 8):
one acknowledged outbox entry when the outbox holds any, else one acknowledged status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final, Protocol

import aiomqtt

from edge_agent.counters import AgentCounters
from edge_agent.outbox import Outbox
from govedge_wire import Message, UpdateStatus

log = logging.getLogger(__name__)

# A status waits this long for a connection before it is dropped (logged, counted).
REPORT_WAIT_S: Final = 60.0


class Connection(Protocol):
    """What of the agent's session a status is published through."""

    session: int
    birth_published: bool

    def next_seq(self) -> int: ...

    async def publish(self, message: Message, *, ack_wait_s: float | None = None) -> None: ...


class StatusPublisher:
    """The installer's ``StatusReporter`` for a running agent."""

    def __init__(
        self,
        *,
        outlet_id: str,
        running_version: str,
        connection: Callable[[], Connection | None],
        counters: AgentCounters,
    ) -> None:
        self._outlet = outlet_id
        self._running = running_version
        self._connection = connection
        self._counters = counters

    async def __call__(
        self,
        state: str,
        *,
        version: str,
        campaign_id: int | None,
        reason: str | None = None,
        detail: str | None = None,
        progress: float | None = None,
    ) -> bool:
        """Publish one ``UpdateStatus``; whether the broker acknowledged it."""
        if state != "downloading" or progress == 0.0:  # counted once per step
            self._counters.incr(f"update_{state}" + (f".{reason}" if reason else ""))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REPORT_WAIT_S
        while loop.time() < deadline:
            connection = self._connection()
            if connection is None or not connection.birth_published:
                await asyncio.sleep(0.2)
                continue
            status = UpdateStatus.model_validate(
                {
                    "outlet_id": self._outlet,
                    "session": connection.session,
                    "seq": connection.next_seq(),
                    "campaign_id": campaign_id,
                    "version": version,
                    "running_version": self._running,
                    "state": state,
                    "reason": reason,
                    "detail": detail,
                    "progress": progress,
                }
            )
            try:
                await connection.publish(status)  # QoS 1: returns on PUBACK
            except (aiomqtt.MqttError, TimeoutError) as exc:
                log.warning("update status %s not acknowledged: %s", state, exc)
                await asyncio.sleep(0.5)
                continue
            log.info("update %s: %s%s", version, state, f" ({reason})" if reason else "")
            return True
        self._counters.incr("update_reports_dropped")
        log.warning("update status %s for %s dropped: not connected", state, version)
        return False

    async def prove_health(self, outbox: Outbox, campaign_id: int | None) -> None:
        """Connected (devices discovered: the runtime is open before the first connect)
        and one message acknowledged: an outbox entry if any waits, else a status."""
        if sum((await outbox.stats()).depth.values()) == 0:
            # Only an acknowledged publish proves the way to the broker works; the
            # supervisor's health timeout bounds the retries.
            while not await self(
                "restarting",
                version=self._running,
                campaign_id=campaign_id,
                detail="new version started; proving health",
            ):
                pass
            return
        # Polled: the outbox has no event for "an ack was applied"; the supervisor's
        # health timeout bounds this wait.
        while (await outbox.stats()).delivery_rate_per_min == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
