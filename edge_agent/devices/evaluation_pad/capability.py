"""What the local API and the queue may ask of the evaluation (rating) pad at a window."""

from __future__ import annotations

from typing import Protocol

from edge_agent.devices.evaluation_pad.models import EvaluationOutcome


class RatingPad(Protocol):
    """The capability of kind ``evaluation_pad``; its drivers satisfy it."""

    @property
    def device_id(self) -> str:
        """The stable id discovery gave the device."""
        ...

    bound_window: str | None

    async def bind_window(self, window: str, *, staff_id: str = "") -> None:
        """Tell the pad which window (and clerk) it serves."""
        ...

    async def request_evaluation(
        self,
        case_no: str,
        *,
        window: str | None = None,
        staff_id: str,
        item_code: str = "",
        item_name: str = "",
        assess_number: int = 1,
        walkaway_after: float | None = None,
    ) -> EvaluationOutcome:
        """Ask the citizen to rate; the rating or the walk-away."""
        ...
