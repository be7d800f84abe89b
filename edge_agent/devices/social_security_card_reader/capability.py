"""What the local API and the queue may ask of the social-security card reader (PC/SC)."""

from __future__ import annotations

from typing import Protocol

from edge_agent.devices.social_security_card_reader.driver import SocialSecurityCard


class SocialSecurityReader(Protocol):
    """The capability of kind ``social_security_card_reader``; its drivers satisfy it."""

    @property
    def device_id(self) -> str:
        """The stable id discovery gave the device."""
        ...

    async def read_card(self, *, wait: float | None = None) -> SocialSecurityCard:
        """Wait up to ``wait`` seconds for a card, then read it."""
        ...
