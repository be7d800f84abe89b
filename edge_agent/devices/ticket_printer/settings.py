"""Driver settings of kind ``ticket_printer``: what its profile (and local config) may set."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge_agent.devices.settings import Baudrate, DriverSettings, seconds


class EscPosPrinterSettings(DriverSettings):
    """Settings keys of ``escpos_printer``; times in seconds."""

    baudrate: Baudrate = 9600
    status_timeout: float = seconds(1.0, "per DLE EOT status byte", most=30)
    job_timeout: float = seconds(10.0, "for the GS r 1 answer after a job", most=120)
    encoding: Literal["gb18030", "gbk", "gb2312"] = Field(
        default="gb18030", description="text encoding of the ticket (Chinese mode)"
    )
    feed_lines: int = Field(default=4, ge=0, le=255, description="lines fed before the cut")
