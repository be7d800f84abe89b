"""The agent's MQTT client: aiomqtt's, with its keep-alive housekeeping less often.

aiomqtt calls paho's ``loop_misc`` once a second for as long as the connection lives.
All ``loop_misc`` does is the keep-alive: send a PINGREQ once nothing went out or came
in for ``keepalive`` seconds, and drop the connection when its PINGRESP did not come
within another ``keepalive``. Once a second woke an idle agent for nothing (issue 17,
docs/performance.md "Agent footprint"); a quarter of the keep-alive (7.5 s for the
default 30 s) still sends each ping well before the broker gives up on the agent (after
1.5 keep-alives of silence) and notices a dead connection at most that much later.

It also waits for its acknowledgements (PUBACK, SUBACK, CONNACK, the disconnect) with
``asyncio.timeout`` instead of aiomqtt's ``asyncio.wait_for``. On Python 3.11,
``wait_for`` swallows a cancellation that arrives in the same loop turn as the awaited
acknowledgement and returns normally; a publishing loop (device events, telemetry,
rebirths) then kept running after the agent's stop had cancelled it, and the stop hung
until the service manager killed the agent (a device that came ready just as the agent
was told to stop). ``asyncio.timeout`` keeps the cancellation.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from typing import Final, TypeVar

import aiomqtt
import paho.mqtt.client as mqtt

__all__ = ["QuietClient", "housekeeping_interval"]

# Keep-alive checks per keep-alive interval.
_CHECKS_PER_KEEPALIVE: Final = 4

_T = TypeVar("_T")


def housekeeping_interval(keepalive_s: float) -> float:
    """Seconds between two keep-alive checks for a ``keepalive_s`` connection (paho
    turns keep-alive off with 0: then a check a minute is plenty)."""
    if keepalive_s <= 0:
        return 60.0
    return keepalive_s / _CHECKS_PER_KEEPALIVE


class QuietClient(aiomqtt.Client):
    """``aiomqtt.Client`` whose keep-alive loop wakes ``housekeeping_interval`` apart and
    whose waits never swallow a cancellation."""

    async def _wait_for(self, fut: Awaitable[_T], timeout: float | None) -> _T:  # noqa: ASYNC109
        # aiomqtt's own contract: None means the client's timeout, math.inf no limit,
        # and running out is an MqttError.
        if timeout is None:
            timeout = self.timeout
        try:
            async with asyncio.timeout(None if timeout == math.inf else timeout):
                return await fut
        except TimeoutError:
            raise aiomqtt.MqttError("Operation timed out") from None

    async def _misc_loop(self) -> None:
        # aiomqtt's own loop, with its fixed 1 s sleep replaced. The keep-alive is read
        # each time: an MQTT 5 broker may impose its own in the CONNACK.
        while self._client.loop_misc() == mqtt.MQTT_ERR_SUCCESS:  # noqa: ASYNC110 (a timer)
            await asyncio.sleep(housekeeping_interval(self._client.keepalive))
