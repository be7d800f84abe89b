"""What the local API and the queue may ask of the document camera."""

from __future__ import annotations

from typing import Protocol

from edge_agent.devices.document_camera.capture import Still


class DocumentCamera(Protocol):
    """The capability of kind ``document_camera``; its drivers satisfy it."""

    @property
    def device_id(self) -> str:
        """The stable id discovery gave the device."""
        ...

    async def capture(self) -> Still:
        """One still of what lies under the camera."""
        ...
