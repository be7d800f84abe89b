"""What the local API and the queue may ask of the clerks' caller keypads."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from edge_agent.devices.caller_keypad.driver import KeyPress


@runtime_checkable
class Keypad(Protocol):
    """The capability of kind ``caller_keypad``; its drivers satisfy it."""

    @property
    def device_id(self) -> str:
        """The stable id discovery gave the device."""
        ...

    def window_of(self, address: int) -> str:
        """The window whose keypad has bus address ``address``."""
        ...

    async def next_key(self, *, within: float) -> KeyPress:
        """The next key pressed on any keypad of the bus."""
        ...

    async def show(self, window: str | int, text: str) -> None:
        """Show ``text`` on the keypad of ``window``."""
        ...
