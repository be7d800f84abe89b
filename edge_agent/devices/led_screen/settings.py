"""The settings a ``led_screen`` profile (and local config) may give its driver."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field

from edge_agent.devices.led_screen.protocol import (
    Status,
)
from edge_agent.devices.settings import Baudrate, DriverSettings, seconds

_HINTS: Final = {
    Status.BAD_COMMAND: "the controller firmware does not know this command",
    Status.BAD_TEXT: "the screen could not decode the text; check its character set",
    Status.BAD_LINE: "the screen has fewer lines; check the screen's line count in config",
    Status.BAD_VALUE: "a value is out of range for this screen",
}


class LedScreenSettings(DriverSettings):
    """Settings keys of ``led_window_screen``; times in seconds."""

    baudrate: Baudrate = 9600
    reply_timeout: float = seconds(0.5, "wait for a screen's reply", most=10)
    retries: int = Field(default=2, ge=0, le=10, description="resends after silence")
    unencodable: Literal["reject", "replace"] = Field(
        default="reject", description="text GB2312 cannot hold: reject it, or show □"
    )
    probe_address: int = Field(default=1, ge=1, le=254, description="screen asked at probe")
