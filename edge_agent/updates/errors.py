"""Why an update step stopped: one exception carrying the protocol's reason code."""

from __future__ import annotations


class UpdateFailed(Exception):
    """A step failed; ``reason`` is a code of docs/updates.md, "Reasons"."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail[:500]
