"""Counting a driver's reads of its ``StreamLink``: how often its read loop woke."""

from __future__ import annotations

from edge_agent.devices.stream import StreamLink


class LinkReads:
    """Wraps ``link.read`` so that every read started from now on is counted."""

    def __init__(self, link: StreamLink) -> None:
        self.count = 0
        self._read = link.read
        link.read = self._counted  # type: ignore[method-assign]

    async def _counted(self, *, within: float | None) -> bytes:
        self.count += 1
        return await self._read(within=within)
