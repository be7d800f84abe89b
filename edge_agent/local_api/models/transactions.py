"""Wire shape of ``/v1/transactions/{tx_id}``: where a submitted transaction is."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from edge_agent.local_api.models.common import examples

__all__ = ["TransactionPublic"]


class TransactionPublic(BaseModel):
    """Where a transaction is: ``waiting`` (in the outbox), ``acked`` (the fleet server
    has it), ``delivered`` (upstream took it; ``case_number`` when it gave one),
    ``rejected`` (``reason``), or ``unknown``."""

    model_config = examples(
        {"tx_id": "case-2024-05-01-0001", "status": "delivered", "tx_kind": "submission",
         "case_number": "330106240501000123", "reason": None, "attempts": 1},
    )  # fmt: skip

    tx_id: str
    status: Literal["waiting", "acked", "delivered", "rejected", "unknown"]
    tx_kind: str | None = None
    case_number: str | None = None
    reason: str | None = None
    attempts: int | None = None
