"""The caller keypads' window operations, done exactly as the clerk app's are.

A key on a window's keypad goes through ``KeypadQueueBridge`` (``queueing.keypad``) to the
queue engine, then through ``present`` — the same code ``POST /v1/windows/{w}/call``
runs: the queue event into the outbox, the window's LED, the voice announcement. The
outcome is published on the event hub as ``window.result`` (``source: "keypad"``), so a
clerk app's ``/v1/events`` WebSocket sees the keypad's call and can play its
``audio_url``; a refused key is ``window.refused``. Both carry ticket numbers, windows
and codes only.
"""

from __future__ import annotations

from edge_agent.devices import DeviceEvent
from edge_agent.discovery import Subscription
from edge_agent.local_api.context import LocalApiContext
from edge_agent.local_api.presenting import present
from edge_agent.queueing import QueueResult
from edge_agent.queueing.keypad import KeypadQueueBridge, KeyRefused

__all__ = ["run_keypads"]

WAIT_S = 3600.0  # one wait on the hub; the loop simply waits again


async def run_keypads(local: LocalApiContext, subscription: Subscription) -> None:
    """Serve every keypad key from ``subscription`` until cancelled."""
    runtime = local.runtime

    async def after(result: QueueResult, operation: str, window: str, device_id: str) -> None:
        answer = await present(local, result, operation=operation, window=window)
        data = answer.model_dump(mode="json", exclude_none=True)
        runtime.events.publish(
            DeviceEvent(
                device_id=device_id,
                name="window.result",
                data={"source": "keypad", **data},
            )
        )

    def refused(refusal: KeyRefused) -> None:
        runtime.events.publish(
            DeviceEvent(
                device_id=refusal.device_id,
                name="window.refused",
                severity="warning",
                data={
                    "source": "keypad",
                    "window": refusal.window,
                    "operation": refusal.operation,
                    "reason": refusal.reason,
                    "message": refusal.message,
                },
            )
        )

    bridge = KeypadQueueBridge(
        runtime.queue,
        after=after,
        driver_of=runtime.devices.driver,
        on_refused=refused,
        windows=runtime.windows,
    )

    async def next_event() -> DeviceEvent:
        while True:
            try:
                return await subscription.get(timeout_s=WAIT_S)
            except TimeoutError:
                continue

    await bridge.run(next_event)
