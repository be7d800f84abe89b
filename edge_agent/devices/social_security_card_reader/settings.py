"""Driver settings of kind ``social_security_card_reader`` (profile and local config)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge_agent.devices.settings import DriverSettings, seconds


class SocialSecuritySettings(DriverSettings):
    """Settings keys of ``pcsc_social_security``; times in seconds."""

    reader: str | None = Field(
        default=None,
        min_length=1,
        description="exact PC/SC reader name or a unique part of it; default: found from "
        "the USB device (docs/devices/social-security-card.md)",
    )
    card_timeout: float = seconds(10.0, "how long read_card waits for a card", most=300)
    session_timeout: float = seconds(10.0, "one connect + select + read cycle", most=300)
    read_style: Literal["auto", "sfi", "current"] = Field(
        default="auto", description="READ RECORD style; auto tries SFI, then current-EF"
    )
