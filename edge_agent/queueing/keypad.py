"""Caller keypads drive the queue: a key on window N's keypad is window N's operation.

The ``caller_keypad`` driver acknowledges each key frame and publishes ``keypad.<key>``
(``{"window", "arg"}``) on the agent's event hub. ``KeypadQueueBridge`` listens there,
runs the matching ``QueueEngine`` operation for that window, writes the outcome on the
keypad's display, and hands the committed result to ``after`` (the agent passes the
local API's ``present``: the queue event into the outbox, the window LED, the voice
announcement — the very path of ``POST /v1/windows/{window}/call``).

Keys (docs/queue.md, "Caller keypads"): ``0C`` call → ``call``, ``0D`` recall →
``recall``, ``06 0F`` 弃号 → ``skip``, ``00 0F`` hold → ``hold``, ``03 0F`` call-back →
``call_back`` (the ticket typed before the key, e.g. ``A012``), ``13`` transfer →
``transfer`` (the target typed before the key: a window number, or a business type's
prefix letter), ``12`` pause → ``pause``, or ``resume`` when the window is already
paused (the keypad has no resume key), ``0B`` evaluate → ``evaluate`` (the agent's
``after`` then starts the rating on the window's pad: ``queueing.keypad_loop``).

Which window a key belongs to: the ``[[queue_windows]]`` entry whose ``keypad`` is this
bus and whose ``keypad_address`` is the key's address (``windows``). A bus that no
configured window names keeps the old rule (address = window number); an address on a
configured bus that no window claims is refused (``UnknownWindow``, ``NO WIN``).

A refused operation (window paused, nobody at the window, unknown ticket …) changes
nothing; the keypad shows a six-character code (``DISPLAY_ERRORS``) and ``on_refused``
is told. Keys are handled one at a time in arrival order. Events and displays carry
ticket numbers and windows only, never personal data.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

from edge_agent.devices import DeviceError, DeviceEvent
from edge_agent.devices.caller_keypad import Keypad
from edge_agent.queueing.engine import QueueEngine
from edge_agent.queueing.errors import (
    NoCurrentTicket,
    QueueError,
    TicketNotFound,
    UnknownBusinessType,
    UnknownWindow,
    WindowPaused,
)
from edge_agent.queueing.models import QueueResult, WindowConfig

__all__ = [
    "DISPLAY_ERRORS",
    "KEY_OPERATIONS",
    "KeyRefused",
    "KeypadQueueBridge",
    "display_text",
]

log = logging.getLogger(__name__)

# keypad.<key> event name → window operation (``pause`` toggles to ``resume``)
KEY_OPERATIONS: Final[dict[str, str]] = {
    "keypad.call": "call",
    "keypad.recall": "recall",
    "keypad.skip": "skip",
    "keypad.hold": "hold",
    "keypad.callback": "call-back",
    "keypad.transfer": "transfer",
    "keypad.pause": "pause",
    "keypad.evaluate": "evaluate",
}
# What a keypad shows when the operation was refused (six ASCII characters at most).
DISPLAY_ERRORS: Final[dict[type[Exception], str]] = {
    WindowPaused: "PAUSED",
    NoCurrentTicket: "NO TKT",
    TicketNotFound: "NOFIND",
    UnknownWindow: "NO WIN",
    UnknownBusinessType: "NOTYPE",
    ValueError: "NO ARG",
}
NOBODY: Final = "----"


# (result, operation, window, keypad device id)
After = Callable[[QueueResult, str, str, str], Awaitable[object]]
DriverOf = Callable[[str], object]  # device id → its ready driver (DeviceUnavailable if not)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRefused:
    """A key whose operation the queue refused; nothing changed."""

    device_id: str
    window: str
    operation: str
    reason: str  # the QueueError class name, e.g. "WindowPaused"
    message: str
    display: str


def display_text(operation: str, result: QueueResult) -> str:
    """What the window's keypad shows after ``operation`` succeeded."""
    if operation == "pause":
        return "PAUSE"
    if operation == "evaluate":
        return "EVAL"
    ticket = result.ticket
    if operation in ("call", "recall", "call-back", "resume") and ticket is not None:
        return ticket.number
    return NOBODY


class KeypadQueueBridge:
    """Runs window operations for ``keypad.*`` events; one instance per agent."""

    def __init__(
        self,
        queue: QueueEngine,
        *,
        after: After,
        driver_of: DriverOf,
        on_refused: Callable[[KeyRefused], None] | None = None,
        windows: Mapping[str, WindowConfig] | None = None,
    ) -> None:
        self.queue = queue
        self.windows = dict(windows or {})
        self._after = after
        self._driver_of = driver_of
        self._on_refused = on_refused
        self.handled = 0
        self.refused = 0
        self.failed = 0

    async def run(self, next_event: Callable[[], Awaitable[DeviceEvent]]) -> None:
        """Handle keys until cancelled; ``next_event`` is a hub subscription's ``get``."""
        while True:
            event = await next_event()
            if event.name not in KEY_OPERATIONS:
                continue
            try:
                await self.handle(event)
            except Exception:  # one bad key must not stop every keypad of the outlet
                self.failed += 1
                log.exception("keypad %s: %s failed", event.device_id, event.name)

    async def handle(self, event: DeviceEvent) -> QueueResult | None:
        """Run one key's operation; the result, or None when the queue refused it."""
        address = event.data.get("address")
        window = self._window_of(event.device_id, address, str(event.data.get("window", "")))
        arg = str(event.data.get("arg", "") or "")
        operation = KEY_OPERATIONS[event.name]
        target: str | int = address if isinstance(address, int) else window
        try:
            if window == "":
                raise UnknownWindow(
                    f"keypad address {address} on {event.device_id} belongs to no window "
                    "in [[queue_windows]]"
                )
            if operation == "pause" and await self._paused(window):
                operation = "resume"
            result = await self._operate(operation, window, arg)
        except (QueueError, ValueError) as exc:
            self.refused += 1
            refusal = KeyRefused(
                device_id=event.device_id,
                window=window,
                operation=operation,
                reason=type(exc).__name__,
                message=str(exc),
                display=next(
                    (text for cls, text in DISPLAY_ERRORS.items() if isinstance(exc, cls)),
                    "ERROR",
                ),
            )
            log.info("keypad %s window %s: %s refused: %s", event.device_id, window, operation, exc)
            await self.show(event.device_id, target, refusal.display)
            if self._on_refused is not None:
                self._on_refused(refusal)
            return None
        self.handled += 1
        # The clerk looks at the keypad first; then the outbox, LED and voice.
        await self.show(event.device_id, target, display_text(operation, result))
        await self._after(result, operation, window, event.device_id)
        return result

    def _window_of(self, device_id: str, address: object, reported: str) -> str:
        """The configured window of this bus address; "" if the bus is configured but not it."""
        buses = [w for w in self.windows.values() if w.keypad == device_id]
        if not buses:
            return reported
        return next((w.window for w in buses if w.keypad_address == address), "")

    def target_of(self, device_id: str, window: str) -> str | int:
        """Where ``window``'s keypad on bus ``device_id`` is: its address, or the window."""
        config = self.windows.get(window)
        if config is not None and config.keypad == device_id and config.keypad_address:
            return config.keypad_address
        return window

    async def _paused(self, window: str) -> bool:
        snapshot = await self.queue.snapshot()
        return any(w.window == window and w.paused for w in snapshot.windows)

    async def _operate(self, operation: str, window: str, arg: str) -> QueueResult:
        queue = self.queue
        if operation == "transfer":
            if not arg:
                raise ValueError("type the target window (or business letter) before 转移")
            if arg.isdigit():
                return await queue.transfer(window, to_window=arg)
            code = next((t.code for t in queue.types.values() if t.prefix == arg.upper()), arg)
            return await queue.transfer(window, to_business_type=code)
        if operation == "call-back":
            if not arg:
                raise ValueError("type the ticket number before 回呼")
            return await queue.call_back(window, arg.upper())
        simple: dict[str, Callable[[str], Awaitable[QueueResult]]] = {
            "call": queue.call,
            "recall": queue.recall,
            "skip": queue.skip,
            "hold": queue.hold,
            "pause": queue.pause,
            "resume": queue.resume,
            "evaluate": queue.evaluate,
        }
        return await simple[operation](window)

    async def show(self, device_id: str, target: str | int, text: str) -> None:
        """Put ``text`` on the keypad at ``target`` (bus address, or a window number).

        Best effort: the operation is committed whether or not the display updates.
        """
        try:
            keypad = self._driver_of(device_id)
            if isinstance(keypad, Keypad):
                await keypad.show(target, text)
        except (DeviceError, ValueError) as exc:
            log.warning("keypad %s at %s: display not updated: %s", device_id, target, exc)
