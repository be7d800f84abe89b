"""``/v1/transactions/{tx_id}``: where a transaction the clerk filed is now."""

from __future__ import annotations

from typing import Annotated

from edge_agent.local_api.deps import LocalDep
from edge_agent.local_api.errors import ApiError, error_responses
from edge_agent.local_api.models import TransactionPublic
from edge_agent.local_api.routing import APIRouter, Path

router = APIRouter(prefix="/transactions", tags=["submissions"])


@router.get("/{tx_id}", response_model=TransactionPublic, responses=error_responses(404))
async def get_transaction(
    tx_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{8,64}$")], local: LocalDep
) -> TransactionPublic:
    """``waiting`` → ``acked`` → ``delivered`` (with ``case_number``) or ``rejected``.

    The ``transaction.result`` WebSocket event tells the same without polling. The
    table survives restarts (``local_api.sqlite3``); for an id it lacks, the outbox
    answers (``waiting`` while still in it); else 404 ``unknown_transaction``.
    """
    status = await local.tracker.status(tx_id)
    if status.status == "unknown":
        raise ApiError(
            404,
            "unknown_transaction",
            f"transaction {tx_id} is not known here",
            hint="check the tx_id: the agent never accepted it, or its record is older "
            "than 30 days (the transaction.result event is the way to follow one)",
        )
    return TransactionPublic(
        tx_id=status.tx_id,
        status=status.status,
        tx_kind=status.tx_kind,
        case_number=status.case_number,
        reason=status.reason,
        attempts=status.attempts,
    )
