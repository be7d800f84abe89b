"""Driver settings of kind ``led_screen``: what its profile (and local config) may set."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge_agent.devices.settings import Baudrate, DriverSettings, seconds


class LedScreenSettings(DriverSettings):
    """Settings keys of ``led_window_screen``; times in seconds."""

    baudrate: Baudrate = 9600
    reply_timeout: float = seconds(0.5, "wait for a screen's reply", most=10)
    retries: int = Field(default=2, ge=0, le=10, description="resends after silence")
    unencodable: Literal["reject", "replace"] = Field(
        default="reject", description="text GB2312 cannot hold: reject it, or show □"
    )
    probe_address: int = Field(default=1, ge=1, le=254, description="screen asked at probe")
