"""The settings a ``social_security_card_reader`` profile (and local config) may give its driver."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge_agent.devices.settings import DriverSettings, seconds

_NO_CARD_HINT = "insert the social-security card into the reader, chip first"
_PARAMETER_ERRORS = {0x6B00, 0x6A86, 0x6D00, 0x6700, 0x6981}


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
