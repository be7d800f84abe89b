"""``/v1/evaluations``: ask the citizen to rate the service (好差评) and wait for it.

The request blocks until the citizen presses a rating or walks away, so the clerk app
must allow ``timeout_s`` + a few seconds on its HTTP call. A rating is recorded as an
evaluation transaction (durably, before the answer) and the answer carries its
``tx_id``. A walk-away is **200** with ``status: "timed_out"`` and no ``tx_id``: the
request worked, the citizen simply did not rate, and that is not an evaluation (the
fleet server derives the active-evaluation rate from cases without one).
The pad is chosen, and the rating recorded, by ``local_api.evaluating`` (shared with
the caller keypad's evaluate key).
"""

from __future__ import annotations

from fastapi import APIRouter

from edge_agent.devices.pad_models import OutcomeStatus
from edge_agent.local_api.deps import LocalDep
from edge_agent.local_api.errors import error_responses
from edge_agent.local_api.evaluating import evaluate_at_window
from edge_agent.local_api.models import EvaluationCreate, EvaluationPublic

router = APIRouter(prefix="/evaluations", tags=["evaluations"])


@router.post(
    "",
    response_model=EvaluationPublic,
    responses=error_responses(404, 409, 502, 503, 504, 507),
)
async def request_evaluation(request: EvaluationCreate, local: LocalDep) -> EvaluationPublic:
    """Show the request on the window's pad and wait for the rating (or the walk-away)."""
    done = await evaluate_at_window(
        local,
        window=request.window,
        case_number=request.case_number,
        staff_id=request.staff_id,
        item_code=request.item_code,
        item_name=request.item_name,
        assess_number=request.assess_number,
        timeout_s=request.timeout_s,
        device_id=request.device_id,
    )
    pad, outcome, tx_id = done.pad, done.outcome, done.tx_id
    if tx_id is None or outcome.result is None:
        return EvaluationPublic(
            status="timed_out" if outcome.status is OutcomeStatus.TIMED_OUT else "cancelled",
            tx_id=None,
            window=request.window,
            device_id=pad.device_id,
            waited_s=outcome.waited_s,
        )
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
