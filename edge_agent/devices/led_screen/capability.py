"""What the local API and the queue may ask of the LED screens above the windows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class WindowScreen(Protocol):
    """The capability of kind ``led_screen``; its drivers satisfy it."""

    @property
    def device_id(self) -> str:
        """The stable id discovery gave the device."""
        ...

    async def show_lines(self, window: str | int, lines: Sequence[str]) -> None:
        """Show ``lines`` on the screen of ``window``."""
        ...
