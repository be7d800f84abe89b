"""Driver settings of kind ``caller_keypad``: what its profile (and local config) may set."""

from __future__ import annotations

from pydantic import Field

from edge_agent.devices.settings import Baudrate, DriverSettings, seconds


class CallerKeypadSettings(DriverSettings):
    """Settings keys of ``caller_keypad``; times in seconds."""

    baudrate: Baudrate = 9600
    reply_timeout: float = seconds(0.5, "wait for a keypad's E5 or reply", most=10)
    retries: int = Field(default=2, ge=0, le=10, description="resends after silence")
    probe_address: int = Field(default=1, ge=1, le=254, description="keypad asked at probe")
    frame_gap: float = seconds(1.0, "silence that drops a partial frame", most=10)
