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

import base64
import binascii
import hashlib
import json
import uuid
from typing import Any

from fastapi import APIRouter

from edge_agent.local_api.context import LocalApiContext, idempotency_conflict
from edge_agent.local_api.deps import IdempotencyKeyDep, LocalDep
from edge_agent.local_api.errors import IDEMPOTENCY_CONFLICT, ApiError, error_responses
from edge_agent.local_api.models import MaterialCreate, SubmissionAccepted, SubmissionCreate
from edge_agent.outbox import InvalidEntry, OutboxFull, UnknownMaterial
from edge_agent.transactions import file_submission
from govedge_wire.transactions import SUBMISSION_KIND

router = APIRouter(prefix="/submissions", tags=["submissions"])


def material_id_for(tx_id: str, index: int) -> str:
    """A material id fixed by the transaction and the position, so a retry reuses it."""
    return hashlib.sha256(f"{tx_id}/{index}".encode()).hexdigest()[:40]


def _material_bytes(local: LocalApiContext, index: int, material: MaterialCreate) -> bytes:
    if material.document_id is not None:
        doc = local.documents.get(material.document_id)
        if doc is None:
            raise ApiError(
                422,
                "unknown_document",
                f"materials[{index}]: document {material.document_id} is unknown or expired",
                hint="capture the document again (captures are kept 30 minutes)",
            )
        return doc.jpeg
    try:
        data = base64.b64decode(material.data_base64 or "", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(
            422,
            "invalid_request",
            f"materials[{index}].data_base64 is not valid base64",
            hint="send the file bytes base64-encoded",
        ) from exc
    if not data:
        raise ApiError(422, "invalid_request", f"materials[{index}] is empty", hint="")
    return data


def body_digest(request: SubmissionCreate) -> str:
    """SHA-256 (hex) of the canonical request body an ``Idempotency-Key`` is bound to."""
    canonical = json.dumps(
        request.model_dump(mode="json", exclude_none=True),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


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
    digest = body_digest(request)
    async with local.idempotency_locks.hold(
        idempotency_key, timeout_s=local.options.idempotency_wait_s
    ):
        bound, new = await local.state.bind_key(idempotency_key, body_sha256=digest)
        if bound != digest:
            raise idempotency_conflict(idempotency_key)
        try:
            return await _accept(local, request, tx_id=idempotency_key)
        except (ApiError, InvalidEntry, UnknownMaterial, OutboxFull):
            if new:  # refused before anything was stored: the key is free again
                await local.state.unbind_key(idempotency_key, body_sha256=digest)
            raise


async def _accept(
    local: LocalApiContext, request: SubmissionCreate, *, tx_id: str
) -> SubmissionAccepted:
    blobs = [_material_bytes(local, i, m) for i, m in enumerate(request.materials)]
    refs: list[dict[str, Any]] = []
    for index, (material, data) in enumerate(zip(request.materials, blobs, strict=True)):
        progress = await local.runtime.outbox.put_material(
            data, material_id=material_id_for(tx_id, index)
        )
        ref: dict[str, Any] = {"name": material.name, "ref": progress.material_id}
        if material.pages is not None:
            ref["pages"] = material.pages
        if material.original:
            ref["original"] = True
        refs.append(ref)
    body = request.model_dump(mode="json", exclude_none=True, exclude={"materials"})
    body["materials"] = refs
    stored = await file_submission(local.runtime, body, tx_id=tx_id)
    await local.tracker.accepted(stored, tx_kind=SUBMISSION_KIND)
    return SubmissionAccepted(tx_id=stored, materials=len(refs))
