"""The caller keypads' window operations, done exactly as the clerk app's are.

The loop runs beside the local API (its lifespan starts it) and reuses the API's
services for the window operation and the rating, so a key and a click do the same.
It reaches them only through ``KeypadServices``, which the local API implements: the
queue package stays below the HTTP package.

A key on a window's keypad goes through ``KeypadQueueBridge`` (``queueing.keypad``) to the
queue engine, then through ``present`` — the same code ``POST /v1/windows/{w}/call``
runs: the queue event into the outbox, the window's LED, the voice announcement. The
outcome is published on the event hub as ``window.result`` (``source: "keypad"``), so a
clerk app's ``/v1/events`` WebSocket sees the keypad's call and can play its
``audio_url``; a refused key is ``window.refused``. Both carry ticket numbers, windows
and codes only.

The evaluate key (评价) then asks the citizen at that window to rate, exactly as
``POST /v1/evaluations`` does (``evaluating.evaluate_at_window``: the window's pad, the
per-pad lock, a rating recorded as an ``evaluation`` transaction in the outbox). The
keypad knows no 办件编号, so the request carries the ticket reference
``T<yyyymmdd>-<ticket>`` (``T20261123-A012``) as its case number and no staff id. It
runs in the background (the citizen may take a minute), so the keypads keep working;
the end is the hub event ``evaluation.result`` (``status`` rated / timed_out /
cancelled, ``tx_id``, ``stars``, ``is_bad``) or ``evaluation.refused`` (``error``: the
local API's code, e.g. ``no_device``, ``pad_busy``), and the keypad shows ``RATED``,
``NORATE``, ``NO PAD``, ``BUSY`` or ``ERROR``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from edge_agent.devices import DeviceError, DeviceEvent, Driver
from edge_agent.discovery import EventHub, Subscription
from edge_agent.outbox import OutboxError
from edge_agent.queueing import QueueEngine, QueueResult, WindowConfig
from edge_agent.queueing.keypad import KeypadQueueBridge, KeyRefused

__all__ = ["KeypadRating", "KeypadServices", "run_keypads", "ticket_case_number"]

log = logging.getLogger(__name__)

WAIT_S = 3600.0  # one wait on the hub; the loop simply waits again
# What the keypad shows when the evaluation could not start (six characters at most).
_REFUSED_DISPLAY: Final = {
    "no_device": "NO PAD",  # no pad ready at all
    "no_pad_for_window": "NO PAD",
    "unknown_device": "NO PAD",  # the configured pad id is not in the inventory
    "device_unavailable": "NO PAD",  # the configured pad is unplugged or not ready
    "pad_busy": "BUSY",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class KeypadRating:
    """How a rating started from a keypad ended."""

    status: str  # rated / timed_out / cancelled
    tx_id: str | None  # the evaluation transaction, None when nothing was recorded
    pad: str
    stars: int | None = None
    is_bad: bool | None = None
    # A walk-away's default rating, as the evaluation answer says it (state pending or
    # recorded, tx_id, stars, due_at); None when the region's profile gives none.
    default_rating: dict[str, Any] | None = None


class KeypadServices(Protocol):
    """What the keypads use of the services behind the clerk app's routes."""

    @property
    def events(self) -> EventHub: ...
    @property
    def queue(self) -> QueueEngine: ...
    @property
    def windows(self) -> Mapping[str, WindowConfig]: ...

    def driver_of(self, device_id: str) -> Driver: ...

    async def present(self, result: QueueResult, *, operation: str, window: str) -> dict[str, Any]:
        """Record, show and speak a window operation; the ``window.result`` answer's JSON."""
        ...

    async def evaluate(self, *, window: str, case_number: str) -> KeypadRating:
        """Ask the citizen at ``window`` to rate (no staff id: the keypad knows none)."""
        ...

    def refusal(self, exc: Exception) -> tuple[str, str] | None:
        """``(code, message)`` when ``exc`` is the services' refusal, else None."""
        ...


def ticket_case_number(day: str, ticket: str) -> str:
    """The case number of a keypad evaluation: ``T`` + the ticket's day + ``-`` + ticket."""
    return f"T{day.replace('-', '')}-{ticket}"


async def run_keypads(services: KeypadServices, subscription: Subscription) -> None:
    """Serve every keypad key from ``subscription`` until cancelled."""
    runtime = services

    async def after(result: QueueResult, operation: str, window: str, device_id: str) -> None:
        data = await services.present(result, operation=operation, window=window)
        runtime.events.publish(
            DeviceEvent(
                device_id=device_id,
                name="window.result",
                data={"source": "keypad", **data},
            )
        )
        if operation == "evaluate":
            start_evaluation(result, window, device_id)

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
        driver_of=services.driver_of,
        on_refused=refused,
        windows=runtime.windows,
    )
    evaluations: set[asyncio.Task[None]] = set()

    async def evaluate(result: QueueResult, window: str, device_id: str) -> None:
        """The evaluate key's rating, on the window's pad; told on the hub and the keypad."""
        ticket = result.ticket
        if ticket is None:
            return
        target = bridge.target_of(device_id, window)
        base: dict[str, Any] = {"source": "keypad", "window": window, "ticket": ticket.number}
        try:
            done = await services.evaluate(
                window=window, case_number=ticket_case_number(ticket.day, ticket.number)
            )
        except DeviceError as exc:
            code, message = "device_error", str(exc)
        except OutboxError as exc:  # rated, but not recorded: the citizen must rate again
            code, message = "outbox_error", str(exc)
        except Exception as exc:
            refused = services.refusal(exc)
            if refused is None:
                raise
            code, message = refused
        else:
            # The keypad first (the clerk looks there), then the hub, as for window keys.
            await bridge.show(device_id, target, "RATED" if done.tx_id else "NORATE")
            runtime.events.publish(
                DeviceEvent(
                    device_id=device_id,
                    name="evaluation.result",
                    data={
                        **base,
                        "status": done.status,
                        "tx_id": done.tx_id,
                        "pad": done.pad,
                        **(
                            {"stars": done.stars, "is_bad": done.is_bad}
                            if done.stars is not None and done.tx_id is not None
                            else {}
                        ),
                        **(
                            {"default_rating": done.default_rating}
                            if done.default_rating is not None
                            else {}
                        ),
                    },
                )
            )
            return
        log.info("keypad %s window %s: evaluation failed: %s", device_id, window, code)
        await bridge.show(device_id, target, _REFUSED_DISPLAY.get(code, "ERROR"))
        runtime.events.publish(
            DeviceEvent(
                device_id=device_id,
                name="evaluation.refused",
                severity="warning",
                data={**base, "error": code, "message": message},
            )
        )

    def start_evaluation(result: QueueResult, window: str, device_id: str) -> None:
        task = asyncio.create_task(evaluate(result, window, device_id), name="keypad-evaluation")
        evaluations.add(task)
        task.add_done_callback(_finished(evaluations))

    async def next_event() -> DeviceEvent:
        while True:
            try:
                return await subscription.get(timeout_s=WAIT_S)
            except TimeoutError:
                continue

    try:
        await bridge.run(next_event)
    finally:
        for task in evaluations:
            task.cancel()
        if evaluations:
            await asyncio.wait(evaluations, timeout=5.0)


def _finished(tasks: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
    def done(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("keypad evaluation failed", exc_info=task.exception())

    return done
