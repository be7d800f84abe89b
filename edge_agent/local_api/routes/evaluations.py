"""``/v1/evaluations``: ask the citizen to rate the service (好差评) and wait for it.

The request blocks until the citizen presses a rating or walks away, so the clerk app
must allow ``timeout_s`` + a few seconds on its HTTP call. A rating is recorded as an
evaluation transaction (durably, before the answer) and the answer carries its
``tx_id``. A walk-away is **200** with ``status: "timed_out"`` and no ``tx_id``: the
request worked, the citizen simply did not rate, and that is not an evaluation (the
fleet server derives the active-evaluation rate from cases without one).
The pad is chosen, and the rating recorded, by ``local_api.evaluating`` (shared with
the caller keypad's evaluate key).

Retries: the same ``Idempotency-Key`` header as ``/v1/submissions`` (it becomes the
``tx_id``). The key is bound to a SHA-256 of the canonical request (without
``timeout_s``, which says how long to wait, not what is rated):

- a retry while the first request still waits on the pad **joins** it: the pad is not
  asked twice and both get the same answer. The pad wait runs as its own task, so a
  client that disconnected does not end it;
- a retry after the rating was recorded gets the recorded answer (``replayed: true``)
  from the **receipt** the outbox stored in the same SQLite commit as the evaluation
  (sealed, kept 30 days, so it survives a crash or restart of the agent);
- the same key with another request is 409 ``idempotency_conflict``;
- a request that recorded nothing (walk-away, no pad, pad busy, device error, full
  outbox) releases its key: the retry asks the citizen again.
"""

from __future__ import annotations

from collections.abc import Callable

from edge_agent.devices.evaluation_pad import RatingPad
from edge_agent.devices.evaluation_pad.models import EvaluationOutcome, OutcomeStatus
from edge_agent.idempotency import request_digest as canonical_digest
from edge_agent.local_api.context import LocalApiContext
from edge_agent.local_api.deps import IdempotencyKeyDep, LocalDep
from edge_agent.local_api.errors import IDEMPOTENCY_CONFLICT, error_responses
from edge_agent.local_api.evaluating import Evaluated, evaluate_at_window
from edge_agent.local_api.models import EvaluationCreate, EvaluationPublic
from edge_agent.local_api.routing import APIRouter
from edge_agent.outbox import Receipt
from govedge_wire.transactions import EVALUATION_KIND

router = APIRouter(prefix="/evaluations", tags=["evaluations"])


def request_digest(request: EvaluationCreate) -> str:
    """SHA-256 (hex) of the canonical request an ``Idempotency-Key`` is bound to.

    The validated request without ``timeout_s``, prefixed with the kind, so a key used
    for a submission never matches an evaluation.
    """
    payload = request.model_dump(mode="json", exclude_none=True, exclude={"timeout_s"})
    return canonical_digest(payload, kind=EVALUATION_KIND)


@router.post(
    "",
    response_model=EvaluationPublic,
    responses=error_responses(
        404,
        409,
        422,
        502,
        503,
        504,
        507,
        examples={
            409: {
                "pad_busy": (
                    "pad_busy",
                    "the pad of window 3 is already waiting for a rating",
                    "wait for the citizen to rate (or walk away) first",
                ),
                "idempotency_conflict": IDEMPOTENCY_CONFLICT,
            }
        },
    ),
)
async def request_evaluation(
    request: EvaluationCreate, local: LocalDep, idempotency_key: IdempotencyKeyDep = None
) -> EvaluationPublic:
    """Show the request on the window's pad and wait for the rating (or the walk-away).

    With ``Idempotency-Key``: a retry joins the request still waiting on the pad, or
    gets the recorded rating (``replayed: true``) without asking the pad again; the same
    key with another request is 409 ``idempotency_conflict``.
    """
    if idempotency_key is None:
        return _public(request, await _evaluate(local, request))
    digest = request_digest(request)

    def make_receipt(pad: RatingPad, outcome: EvaluationOutcome, tx_id: str) -> Receipt:
        done = Evaluated(pad=pad, outcome=outcome, tx_id=tx_id)
        answer = _public(request, done).model_dump(mode="json", exclude={"replayed"})
        return Receipt(request_sha256=digest, answer=answer)

    async def evaluate() -> EvaluationPublic:
        done = await _evaluate(local, request, tx_id=idempotency_key, receipt=make_receipt)
        return _public(request, done)

    return await local.idempotency.joined(
        idempotency_key,
        digest,
        evaluate,
        tx_kind=EVALUATION_KIND,
        replay=lambda answer: EvaluationPublic.model_validate({**answer, "replayed": True}),
        recorded=lambda answer: answer.tx_id is not None,  # a walk-away frees the key
    )


async def _evaluate(
    local: LocalApiContext,
    request: EvaluationCreate,
    *,
    tx_id: str | None = None,
    receipt: Callable[[RatingPad, EvaluationOutcome, str], Receipt] | None = None,
) -> Evaluated:
    return await evaluate_at_window(
        local,
        window=request.window,
        case_number=request.case_number,
        staff_id=request.staff_id,
        item_code=request.item_code,
        item_name=request.item_name,
        assess_number=request.assess_number,
        timeout_s=request.timeout_s,
        device_id=request.device_id,
        tx_id=tx_id,
        receipt=receipt,
    )


def _public(request: EvaluationCreate, done: Evaluated) -> EvaluationPublic:
    pad, outcome, tx_id = done.pad, done.outcome, done.tx_id
    if tx_id is None or outcome.result is None:
        return EvaluationPublic(
            status="timed_out" if outcome.status is OutcomeStatus.TIMED_OUT else "cancelled",
            tx_id=None,
            window=request.window,
            device_id=pad.device_id,
            waited_s=outcome.waited_s,
            default_rating=None if done.default is None else done.default.public(),
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
