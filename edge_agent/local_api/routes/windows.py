"""``/v1/windows/{window}/…``: the clerk's window operations (叫号, 重呼, 弃号, 转移 …).

Each answers the operation's result: the ticket now at the window, who waits, the
announcement (text and a WAV URL), what the LED shows, and the ``tx_id`` of the queue
event recorded in the outbox. Problems after the queue committed (LED unplugged, voice
failed) are ``warnings``, not errors. The result is also published as ``window.result``
(``source: "api"``) on the event stream, as a keypad's is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from edge_agent.local_api.deps import LocalDep
from edge_agent.local_api.errors import error_responses
from edge_agent.local_api.evaluation_qr import evaluation_link, qr_svg, window_pad
from edge_agent.local_api.models import (
    CallBackCreate,
    EvaluationQrPublic,
    TransferCreate,
    WindowResultPublic,
)
from edge_agent.local_api.presenting import present, publish_hall_event
from edge_agent.local_api.routing import APIRouter, Path, Query
from edge_agent.queueing import QueueEngine, QueueResult, UnknownWindow
from edge_agent.queueing.keypad_loop import ticket_case_number

router = APIRouter(prefix="/windows/{window}", tags=["windows"])

WindowPath = Annotated[
    str, Path(min_length=1, max_length=64, description="the window number", examples=["3"])
]
_RESPONSES = error_responses(404, 409, 503)
Op = Callable[[QueueEngine, str], Awaitable[QueueResult]]


async def _run(local: LocalDep, window: str, operation: str, op: Op) -> WindowResultPublic:
    result = await op(local.runtime.queue, window)
    answer = await present(local, result, operation=operation, window=window)
    # The same ``window.result`` a keypad's key publishes: the hall display shows and
    # speaks a call whichever way the clerk made it.
    publish_hall_event(local, "window.result", answer.model_dump(mode="json", exclude_none=True))
    return answer


@router.post("/call", response_model=WindowResultPublic, responses=_RESPONSES)
async def call(window: WindowPath, local: LocalDep) -> WindowResultPublic:
    """叫号: finish the current ticket and call the next (``ticket`` null if nobody waits)."""
    return await _run(local, window, "call", QueueEngine.call)


@router.post("/recall", response_model=WindowResultPublic, responses=_RESPONSES)
async def recall(window: WindowPath, local: LocalDep) -> WindowResultPublic:
    """重呼: announce the current ticket again."""
    return await _run(local, window, "recall", QueueEngine.recall)


@router.post("/skip", response_model=WindowResultPublic, responses=_RESPONSES)
async def skip(window: WindowPath, local: LocalDep) -> WindowResultPublic:
    """弃号: the citizen did not come; the ticket can be called back today."""
    return await _run(local, window, "skip", QueueEngine.skip)


@router.post("/hold", response_model=WindowResultPublic, responses=_RESPONSES)
async def hold(window: WindowPath, local: LocalDep) -> WindowResultPublic:
    """挂起: park the current ticket (papers missing) to call it back later."""
    return await _run(local, window, "hold", QueueEngine.hold)


@router.post("/finish", response_model=WindowResultPublic, responses=_RESPONSES)
async def finish(window: WindowPath, local: LocalDep) -> WindowResultPublic:
    """办结: the current ticket is served; call nobody yet."""
    return await _run(local, window, "finish", QueueEngine.finish)


@router.post("/pause", response_model=WindowResultPublic, responses=_RESPONSES)
async def pause(window: WindowPath, local: LocalDep) -> WindowResultPublic:
    """暂停: the window calls nobody until resumed."""
    return await _run(local, window, "pause", QueueEngine.pause)


@router.post("/resume", response_model=WindowResultPublic, responses=_RESPONSES)
async def resume(window: WindowPath, local: LocalDep) -> WindowResultPublic:
    """Resume a paused window."""
    return await _run(local, window, "resume", QueueEngine.resume)


@router.post("/transfer", response_model=WindowResultPublic, responses=_RESPONSES)
async def transfer(
    window: WindowPath, request: TransferCreate, local: LocalDep
) -> WindowResultPublic:
    """转移: the current ticket waits again, for another business type or window."""

    async def op(queue: QueueEngine, name: str) -> QueueResult:
        return await queue.transfer(
            name, to_business_type=request.to_business_type, to_window=request.to_window
        )

    return await _run(local, window, "transfer", op)


@router.post("/call-back", response_model=WindowResultPublic, responses=_RESPONSES)
async def call_back(
    window: WindowPath, request: CallBackCreate, local: LocalDep
) -> WindowResultPublic:
    """回呼: call a held or skipped ticket of today to this window."""

    async def op(queue: QueueEngine, name: str) -> QueueResult:
        return await queue.call_back(name, request.ticket)

    return await _run(local, window, "call-back", op)


@router.get("/evaluation-qr", response_model=EvaluationQrPublic, responses=error_responses(404))
async def evaluation_qr(
    window: WindowPath,
    local: LocalDep,
    case_number: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            description="the case to rate; default: the current ticket, T<yyyymmdd>-<ticket>",
        ),
    ] = None,
) -> EvaluationQrPublic:
    """好差评 QR code for a window without a pad: the province's page of the case, as SVG.

    Null ``url`` and ``svg`` when the window has a pad, no QR template is configured, or
    there is nothing to rate. Changes nothing.
    """
    snapshot = await local.runtime.queue.snapshot()
    mine = next((w for w in snapshot.windows if w.window == window), None)
    if mine is None:
        raise UnknownWindow(f"no window {window!r} is configured")
    pad = window_pad(local, window)
    if case_number is None and mine.current_ticket is not None:
        case_number = ticket_case_number(snapshot.day, mine.current_ticket)
    url = None if pad is not None or case_number is None else evaluation_link(local, case_number)
    return EvaluationQrPublic(
        window=window,
        pad=pad,
        case_number=case_number,
        url=url,
        svg=None if url is None else qr_svg(url),
    )
