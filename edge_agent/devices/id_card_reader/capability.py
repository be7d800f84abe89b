"""What the local API and the queue may ask of the second-generation ID-card reader (SAM module)."""

from __future__ import annotations

from typing import Protocol

from edge_agent.devices.id_card_reader.text import IdCard


class IdCardReader(Protocol):
    """The capability of kind ``id_card_reader``; its drivers satisfy it."""

    @property
    def device_id(self) -> str:
        """The stable id discovery gave the device."""
        ...

    async def read_card(
        self, *, fingerprint: bool | None = None, extra_address: bool | None = None
    ) -> IdCard:
        """Read the card on the reader (text, photo and, if asked, fingerprint)."""
        ...
