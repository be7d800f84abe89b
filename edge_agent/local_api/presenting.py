"""After a queue operation: record it, show it on the window's LED, speak it.

The queue engine has already committed the operation when this runs, so nothing here
may undo it: the event is put in the outbox (its own id as ``tx_id``; by replaying the
queue's events after the outbox's cursor, so none is lost to a crash), then shown and
spoken, and every failure after the commit becomes a warning in the answer, never an
error (the ticket *was* called; the clerk needs to know the screen stayed dark).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from edge_agent.devices import DeviceError, DeviceEvent
from edge_agent.devices.led_screen import WindowScreen
from edge_agent.local_api.context import LocalApiContext
from edge_agent.local_api.errors import ApiError, from_device_error, from_outbox_error
from edge_agent.local_api.models import (
    AnnouncementPublic,
    LedPublic,
    TicketInfo,
    WarningPublic,
    WindowResultPublic,
)
from edge_agent.outbox import OutboxError
from edge_agent.queueing import QueueResult, Ticket, VoiceError, render_announcement
from edge_agent.transactions import relay_queue_events

__all__ = ["present", "publish_hall_event", "record", "ticket_info", "warning_of"]

# The device id of events the local API itself publishes (keypads publish their own).
API_SOURCE = "local-api"

log = logging.getLogger(__name__)


def publish_hall_event(local: LocalApiContext, name: str, data: dict[str, Any]) -> None:
    """Tell every ``/v1/events`` client (the hall display first) what the API just did.

    Queue numbers, windows and codes only: hall screens receive these (``roles.py``).
    """
    local.runtime.events.publish(
        DeviceEvent(device_id=API_SOURCE, name=name, data={"source": "api", **data})
    )


def warning_of(error: ApiError) -> WarningPublic:
    """An error that did not stop the operation, as a warning."""
    return WarningPublic(code=error.code, message=error.message, hint=error.hint)


def ticket_info(ticket: Ticket | None) -> TicketInfo | None:
    """The public view of a queue ticket."""
    if ticket is None:
        return None
    return TicketInfo(
        number=ticket.number,
        business_type=ticket.business_type,
        status=ticket.status.value,
        window=ticket.window,
        issued_at=ticket.issued_at,
        calls=ticket.calls,
    )


async def record(
    local: LocalApiContext, result: QueueResult, warnings: list[WarningPublic]
) -> str | None:
    """Put the queue event in the outbox; a failure is a warning (the op is done).

    Through ``relay_queue_events``: every event the outbox lacks (this one, and any an
    earlier crash or a full outbox left behind) goes in, each exactly once.
    """
    try:
        await relay_queue_events(local.runtime)
        tx_id = str(result.event["id"])
    except OutboxError as exc:
        log.warning("queue event %s not recorded: %s", result.event.get("kind"), exc)
        warnings.append(warning_of(from_outbox_error(exc)))
        return None
    await local.tracker.accepted(tx_id, tx_kind=str(result.event.get("kind", "queue")))
    return tx_id


async def _show(
    local: LocalApiContext, window: str, lines: tuple[str, str], warnings: list[WarningPublic]
) -> bool:
    """Show ``lines`` on the window's LED: its ``led`` / ``led_address`` in the config.

    Without configured windows: the first ready LED controller, at the window number. A
    configured window without an ``led`` has no screen (nothing shown, no warning).
    """
    declared = local.runtime.windows.get(window)
    screen: WindowScreen | None = None
    address: str | int = window
    if local.runtime.windows:
        if declared is None or declared.led is None or declared.led_address is None:
            return False
        address = declared.led_address
        try:
            screen = local.find_driver(
                WindowScreen,
                device_id=declared.led,
                what="LED screen",
                hint="check the LED controller's power and cable",
            )
        except ApiError as exc:
            warnings.append(warning_of(exc))
            return False
    else:
        screens = local.ready_drivers(WindowScreen)
        if not screens:
            return False
        screen = screens[0]
    try:
        await screen.show_lines(address, lines)
    except DeviceError as exc:
        warnings.append(warning_of(from_device_error(exc)))
        return False
    except ValueError as exc:  # LedTextError or a window without an LED address
        warnings.append(WarningPublic(code="led_text", message=str(exc), hint="check LED config"))
        return False
    return True


async def _speak(
    local: LocalApiContext, announcement_id: str, text: str, warnings: list[WarningPublic]
) -> str | None:
    if not local.options.speak:
        return None
    path = local.announcements.path_for(announcement_id)
    try:
        await render_announcement(text, path, within=local.options.voice_timeout_s)
    except VoiceError as exc:
        warnings.append(
            WarningPublic(
                code="voice_failed",
                message=str(exc),
                hint="the announcement is not spoken; technicians: check espeak-ng",
            )
        )
        return None
    local.announcements.added(announcement_id)
    if local.player.enabled:
        local.player.enqueue(announcement_id, await asyncio.to_thread(path.read_bytes))
    return f"/v1/announcements/{announcement_id}.wav"


async def present(
    local: LocalApiContext, result: QueueResult, *, operation: str, window: str
) -> WindowResultPublic:
    """Record, show and speak one window operation's result."""
    warnings: list[WarningPublic] = []
    tx_id = await record(local, result, warnings)
    led: LedPublic | None = None
    if result.led is not None:
        lines = result.led.lines
        shown = await _show(local, result.led.window, lines, warnings)
        led = LedPublic(lines=list(lines), shown=shown)
    announcement: AnnouncementPublic | None = None
    if result.announcement:
        live = local.runtime.live
        # A fleet config may silence the hall (queue.voice.enabled): the text still shows.
        spoken = live is None or live.voice_enabled
        url = (
            await _speak(local, str(result.event["id"]), result.announcement, warnings)
            if spoken
            else None
        )
        announcement = AnnouncementPublic(text=result.announcement, audio_url=url)
    return WindowResultPublic(
        operation=operation,
        window=window,
        ticket=ticket_info(result.ticket),
        waiting=result.waiting,
        announcement=announcement,
        led=led,
        tx_id=tx_id,
        warnings=warnings,
    )
