"""One evaluation (好差评) at a window: find its pad, show the request, wait, record it.

Shared by ``POST /v1/evaluations`` and the caller keypad's evaluate key, so both pick
the pad the same way, hold the same per-pad lock, and put a rating into the outbox as
an ``evaluation`` transaction through the same ``record_evaluation`` call (and the
transaction tracker), before anyone is told it was rated.

Which pad: the request's ``device_id``; else the ``pad`` of the window in
``[[queue_windows]]``; else the pad bound to the window; else the only ready pad (bound
to the window on the fly).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from edge_agent.devices.evaluation_pad import RatingPad
from edge_agent.devices.evaluation_pad.models import EvaluationOutcome, OutcomeStatus
from edge_agent.local_api.context import LocalApiContext
from edge_agent.local_api.default_ratings import (
    ScheduledDefault,
    cancel_default,
    schedule_default,
)
from edge_agent.local_api.errors import ApiError
from edge_agent.outbox import Receipt
from edge_agent.transactions import record_evaluation
from govedge_wire.transactions import EVALUATION_KIND

__all__ = ["Evaluated", "evaluate_at_window", "pad_for"]

HINT: Final = "connect the window's evaluation pad, or give the window its pad in the config"


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluated:
    """How one evaluation ended: the pad, its outcome, the ``tx_id`` if rated, and the
    region's default rating a walk-away was given instead (if its profile has one)."""

    pad: RatingPad
    outcome: EvaluationOutcome
    tx_id: str | None
    default: ScheduledDefault | None = None


def pad_for(local: LocalApiContext, window: str, device_id: str | None = None) -> RatingPad:
    """The pad of ``window``: given, configured, bound to it, or the only one."""
    declared = local.runtime.windows.get(window)
    configured = device_id or (declared.pad if declared is not None else None)
    if configured is not None:
        return local.find_driver(RatingPad, device_id=configured, what="evaluation pad", hint=HINT)
    pads = local.ready_drivers(RatingPad)
    if not pads:
        raise ApiError(503, "no_device", "no evaluation pad is connected and ready", hint=HINT)
    for pad in pads:
        if pad.bound_window == window:
            return pad
    if len(pads) == 1:
        return pads[0]
    raise ApiError(
        409, "no_pad_for_window", f"no evaluation pad is bound to window {window}", hint=HINT
    )


async def evaluate_at_window(
    local: LocalApiContext,
    *,
    window: str,
    case_number: str,
    staff_id: str,
    item_code: str = "",
    item_name: str = "",
    assess_number: int = 1,
    timeout_s: float | None = None,
    device_id: str | None = None,
    tx_id: str | None = None,
    receipt: Callable[[RatingPad, EvaluationOutcome, str], Receipt] | None = None,
) -> Evaluated:
    """Show the request on the window's pad, wait for the citizen, record a rating.

    ``ApiError`` (no pad, ``pad_busy`` …) or a ``DeviceError`` before anything was shown
    or recorded; a rating is durably in the outbox when this returns its ``tx_id``.
    ``tx_id`` (the client's ``Idempotency-Key``) names the evaluation; ``receipt`` makes
    the answer a retry gets, stored in the same commit as the evaluation.
    """
    pad = pad_for(local, window, device_id)
    lock = local.evaluation_locks.setdefault(pad.device_id, asyncio.Lock())
    if lock.locked():
        raise ApiError(
            409,
            "pad_busy",
            f"the pad of window {window} is already waiting for a rating",
            hint="wait for the citizen to rate (or walk away) first",
        )
    async with lock:
        if pad.bound_window != window:
            await pad.bind_window(window, staff_id=staff_id)
        outcome = await pad.request_evaluation(
            case_number,
            window=window,
            staff_id=staff_id,
            item_code=item_code,
            item_name=item_name,
            assess_number=assess_number,
            walkaway_after=min(
                timeout_s or local.options.evaluation_timeout_s,
                local.options.evaluation_max_timeout_s,
            ),
        )
    if outcome.status is OutcomeStatus.TIMED_OUT:
        default = await schedule_default(local, outcome)
        return Evaluated(pad=pad, outcome=outcome, tx_id=None, default=default)
    if outcome.status is not OutcomeStatus.RATED or outcome.result is None:
        return Evaluated(pad=pad, outcome=outcome, tx_id=None)
    stored = await record_evaluation(
        local.runtime,
        outcome,
        tx_id=tx_id,
        receipt=None if receipt is None or tx_id is None else receipt(pad, outcome, tx_id),
    )
    await local.tracker.accepted(stored, tx_kind=EVALUATION_KIND)
    # The citizen rated after all: a default waiting for this case is not theirs to get.
    await cancel_default(local, case_number=case_number, assess_number=assess_number)
    return Evaluated(pad=pad, outcome=outcome, tx_id=stored)
