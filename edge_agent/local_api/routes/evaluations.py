"""``/v1/evaluations``: ask the citizen to rate the service (好差评) and wait for it.

The request blocks until the citizen presses a rating or walks away, so the clerk app
must allow ``timeout_s`` + a few seconds on its HTTP call. A rating is recorded as an
evaluation transaction (durably, before the answer) and the answer carries its
``tx_id``. A walk-away is **200** with ``status: "timed_out"`` and no ``tx_id``: the
request worked, the citizen simply did not rate, and that is not an evaluation (the
fleet server derives the active-evaluation rate from cases without one).
"""

from __future__ import annotations

import asyncio
from typing import Final

from fastapi import APIRouter

from edge_agent.devices.drivers.evaluation_pad import EvaluationPad
from edge_agent.devices.pad_models import OutcomeStatus
from edge_agent.local_api.context import LocalApiContext
from edge_agent.local_api.deps import LocalDep
from edge_agent.local_api.errors import ApiError, error_responses
from edge_agent.local_api.models import EvaluationCreate, EvaluationPublic
from edge_agent.transactions import EVALUATION_KIND, record_evaluation

router = APIRouter(prefix="/evaluations", tags=["evaluations"])

_HINT: Final = "connect the window's evaluation pad, or bind pads to windows in the config"


def _pad_for(local: LocalApiContext, request: EvaluationCreate) -> EvaluationPad:
    """The pad of ``request.window``: given, configured, bound to it, or the only one."""
    configured = request.device_id or local.options.pads_by_window.get(request.window)
    if configured is not None:
        return local.find_driver(
            EvaluationPad, device_id=configured, what="evaluation pad", hint=_HINT
        )
    pads = local.ready_drivers(EvaluationPad)
    if not pads:
        raise ApiError(503, "no_device", "no evaluation pad is connected and ready", hint=_HINT)
    for pad in pads:
        if pad.bound_window == request.window:
            return pad
    if len(pads) == 1:
        return pads[0]
    raise ApiError(
        409,
        "no_pad_for_window",
        f"no evaluation pad is bound to window {request.window}",
        hint=_HINT,
    )


@router.post(
    "",
    response_model=EvaluationPublic,
    responses=error_responses(404, 409, 502, 503, 504, 507),
)
async def request_evaluation(request: EvaluationCreate, local: LocalDep) -> EvaluationPublic:
    """Show the request on the window's pad and wait for the rating (or the walk-away)."""
    pad = _pad_for(local, request)
    lock = local.evaluation_locks.setdefault(pad.device_id, asyncio.Lock())
    if lock.locked():
        raise ApiError(
            409,
            "pad_busy",
            f"the pad of window {request.window} is already waiting for a rating",
            hint="wait for the citizen to rate (or walk away) first",
        )
    async with lock:
        if pad.bound_window != request.window:
            await pad.bind_window(request.window, staff_id=request.staff_id)
        outcome = await pad.request_evaluation(
            request.case_number,
            window=request.window,
            staff_id=request.staff_id,
            item_code=request.item_code,
            item_name=request.item_name,
            assess_number=request.assess_number,
            walkaway_after=min(
                request.timeout_s or local.options.evaluation_timeout_s,
                local.options.evaluation_max_timeout_s,
            ),
        )
    if outcome.status is not OutcomeStatus.RATED or outcome.result is None:
        return EvaluationPublic(
            status="timed_out" if outcome.status is OutcomeStatus.TIMED_OUT else "cancelled",
            tx_id=None,
            window=request.window,
            device_id=pad.device_id,
            waited_s=outcome.waited_s,
        )
    tx_id = await record_evaluation(local.runtime, outcome)
    await local.tracker.accepted(tx_id, tx_kind=EVALUATION_KIND)
    result = outcome.result
    return EvaluationPublic(
        status="rated",
        tx_id=tx_id,
        window=request.window,
        device_id=pad.device_id,
        stars=result.stars,
        level_code=result.level_code,
        level_coding=result.level_coding,
        satisfaction=result.satisfaction,
        score=result.score,
        is_bad=result.is_bad,
        tags=list(result.tags),
        text=result.text,
        assess_time=result.assess_time,
    )
