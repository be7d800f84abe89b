"""The local API's services as the caller keypads use them (``queueing.keypad_loop``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge_agent.devices import Driver
from edge_agent.discovery import EventHub
from edge_agent.local_api.context import LocalApiContext
from edge_agent.local_api.errors import ApiError
from edge_agent.local_api.evaluating import evaluate_at_window
from edge_agent.local_api.presenting import present
from edge_agent.queueing import QueueEngine, QueueResult, WindowConfig
from edge_agent.queueing.keypad_loop import KeypadRating

__all__ = ["LocalKeypadServices"]


class LocalKeypadServices:
    """``KeypadServices`` over one local API context: a key does what a click does."""

    def __init__(self, local: LocalApiContext) -> None:
        self._local = local

    @property
    def events(self) -> EventHub:
        return self._local.runtime.events

    @property
    def queue(self) -> QueueEngine:
        return self._local.runtime.queue

    @property
    def windows(self) -> Mapping[str, WindowConfig]:
        return self._local.runtime.windows

    def driver_of(self, device_id: str) -> Driver:
        return self._local.runtime.devices.driver(device_id)

    async def present(self, result: QueueResult, *, operation: str, window: str) -> dict[str, Any]:
        answer = await present(self._local, result, operation=operation, window=window)
        return answer.model_dump(mode="json", exclude_none=True)

    async def evaluate(self, *, window: str, case_number: str) -> KeypadRating:
        done = await evaluate_at_window(
            self._local, window=window, case_number=case_number, staff_id=""
        )
        rated = done.outcome.result
        return KeypadRating(
            status=done.outcome.status.value,
            tx_id=done.tx_id,
            pad=done.pad.device_id,
            stars=rated.stars if rated is not None else None,
            is_bad=rated.is_bad if rated is not None else None,
            default_rating=(
                None if done.default is None else done.default.public().model_dump(mode="json")
            ),
        )

    def refusal(self, exc: Exception) -> tuple[str, str] | None:
        if isinstance(exc, ApiError):
            return exc.code, exc.message
        return None
