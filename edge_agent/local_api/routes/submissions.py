"""``/v1/submissions``: file a case (办件) — validated, then durably in the outbox, then 202.

The answer comes only after the outbox's fsynced commit, so "accepted" survives a power
cut. Send an ``Idempotency-Key`` (it becomes the ``tx_id``): posting the same key again
(after a timeout, a crash, a double click) returns the same ``tx_id`` and stores
nothing twice — materials included, since their ids derive from the key.

The key is bound to the request: a SHA-256 of the canonical body (the validated
request as sorted, compact JSON, so whitespace, key order and explicit nulls do not
matter) is stored with it in ``local_api.sqlite3``. The same key with a different body
is 409 ``idempotency_conflict``; two requests with the same key run one after the other.
A request refused before anything was stored (422, 507) releases its key again.
"""

from __future__ import annotations

import uuid

from edge_agent.idempotency import request_digest
from edge_agent.local_api.context import LocalApiContext
from edge_agent.local_api.deps import IdempotencyKeyDep, LocalDep
from edge_agent.local_api.errors import IDEMPOTENCY_CONFLICT, ApiError, error_responses
from edge_agent.local_api.models import SubmissionAccepted, SubmissionCreate
from edge_agent.local_api.routing import APIRouter
from edge_agent.outbox import InvalidEntry, OutboxFull, UnknownMaterial
from edge_agent.transactions import MaterialUnavailable, file_submission_with_materials
from govedge_wire.transactions import SUBMISSION_KIND

router = APIRouter(prefix="/submissions", tags=["submissions"])


def body_digest(request: SubmissionCreate) -> str:
    """SHA-256 (hex) of the canonical request body an ``Idempotency-Key`` is bound to."""
    return request_digest(request.model_dump(mode="json", exclude_none=True))


@router.post(
    "",
    response_model=SubmissionAccepted,
    status_code=202,
    responses=error_responses(
        409,
        422,
        503,
        507,
        examples={
            409: {
                "idempotency_conflict": IDEMPOTENCY_CONFLICT,
                "request_in_progress": (
                    "request_in_progress",
                    "a request with the same Idempotency-Key is still being processed",
                    "wait for the first request's answer, then retry with the same key",
                ),
            }
        },
    ),
)
async def file_case(
    request: SubmissionCreate, local: LocalDep, idempotency_key: IdempotencyKeyDep = None
) -> SubmissionAccepted:
    """Accept a submission: materials and case stored durably before this answers 202.

    409 ``idempotency_conflict``: the ``Idempotency-Key`` was already used with another
    body.
    """
    if idempotency_key is None:
        return await _accept(local, request, tx_id=uuid.uuid4().hex)
    return await local.idempotency.serialised(
        idempotency_key,
        body_digest(request),
        lambda: _accept(local, request, tx_id=idempotency_key),
        # refused before anything was stored: the key is free again
        release_on=(ApiError, InvalidEntry, UnknownMaterial, OutboxFull),
    )


async def _accept(
    local: LocalApiContext, request: SubmissionCreate, *, tx_id: str
) -> SubmissionAccepted:
    try:
        stored, materials = await file_submission_with_materials(
            local.runtime,
            request.model_dump(mode="json", exclude_none=True, exclude={"materials"}),
            request.materials,
            documents=lambda document_id: _jpeg(local, document_id),
            tx_id=tx_id,
        )
    except MaterialUnavailable as exc:
        raise _material_error(exc) from exc
    await local.tracker.accepted(stored, tx_kind=SUBMISSION_KIND)
    return SubmissionAccepted(tx_id=stored, materials=materials)


def _jpeg(local: LocalApiContext, document_id: str) -> bytes | None:
    document = local.documents.get(document_id)
    return None if document is None else document.jpeg


def _material_error(exc: MaterialUnavailable) -> ApiError:
    if exc.reason == "unknown_document":
        hint = "capture the document again (captures are kept 30 minutes)"
        return ApiError(422, "unknown_document", str(exc), hint=hint)
    hint = "send the file bytes base64-encoded" if exc.reason == "not_base64" else ""
    return ApiError(422, "invalid_request", str(exc), hint=hint)
