"""The counter's transactions: validated here, then put into the outbox before "accepted".

The clerks' local API calls these functions; each returns the ``tx_id`` only after
the outbox committed the entry (fsynced), so answering "accepted" with it is true. All
use ``PriorityClass.TRANSACTION``. The body shapes are
``govedge_wire.transactions``, the very models the fleet server validates on ingest,
so a body the server would reject is refused here, at the counter, where the clerk can
still fix it (docs/transactions.md, "One strictness rule").

Errors: ``InvalidTransaction`` (a subclass of ``outbox.InvalidEntry``: answer 422) names
the bad fields, never their values (they may be personal data); ``OutboxFull`` (507),
``UnknownMaterial`` and ``StorageError`` come from the outbox unchanged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Literal, Protocol, TypeVar

from pydantic import BaseModel, JsonValue, ValidationError

from edge_agent.devices.evaluation_pad.models import EvaluationOutcome, OutcomeStatus
from edge_agent.outbox import InvalidEntry, PriorityClass, Receipt
from edge_agent.outbox.codec import ID_PATTERN
from edge_agent.runtime import AgentRuntime
from govedge_wire import now_ms
from govedge_wire.pii import field_path
from govedge_wire.transactions import (
    EVALUATION_KIND,
    QUEUE_KIND_PREFIX,
    SUBMISSION_KIND,
    EvaluationBody,
    SubmissionBody,
    queue_event_oversize,
)

__all__ = [
    "InvalidTransaction",
    "MaterialSource",
    "MaterialUnavailable",
    "file_submission",
    "file_submission_with_materials",
    "material_id_for",
    "record_default_evaluation",
    "record_evaluation",
    "record_queue_event",
    "relay_queue_events",
]

log = logging.getLogger(__name__)

# The outbox cursor over the queue engine's event sequence (``relay_queue_events``).
QUEUE_EVENTS_STREAM: Final = "queue_events"
_RELAY_BATCH: Final = 500


class InvalidTransaction(InvalidEntry):
    """A transaction body does not fit its kind; ``fields`` names what is wrong."""

    def __init__(self, message: str, *, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.fields = fields


_M = TypeVar("_M", bound=BaseModel)


def _validate(model: type[_M], data: Mapping[str, Any], *, what: str) -> _M:
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        fields = tuple(
            sorted({".".join(field_path(error["loc"])) or "body" for error in exc.errors()})
        )
        raise InvalidTransaction(
            f"invalid {what}: check {', '.join(fields[:8])}", fields=fields
        ) from None


def _json_body(model: BaseModel) -> dict[str, JsonValue]:
    body: dict[str, JsonValue] = model.model_dump(mode="json", exclude_none=True)
    return body


def _tx_id(value: str | None, *, fallback: str | None = None) -> str:
    for candidate in (value, fallback):
        if candidate and ID_PATTERN.fullmatch(candidate):
            return candidate
    if value:
        raise InvalidTransaction(
            "tx_id must be 8-64 letters, digits, '_' or '-'", fields=("tx_id",)
        )
    return uuid.uuid4().hex


async def file_submission(
    runtime: AgentRuntime, body: Mapping[str, Any], *, tx_id: str | None = None
) -> str:
    """Validate a submission (办件) and put it into the outbox; return its ``tx_id``.

    ``body`` has the fields of ``SubmissionBody``; ``accepted_ts`` defaults to now. Every
    ``materials[].ref`` must have been stored with ``outbox.put_material`` first: the
    submission is sent only after all their chunks were acknowledged. Retrying with the
    same ``tx_id`` never makes a second transaction.
    """
    submission = _validate(SubmissionBody, body, what=SUBMISSION_KIND)
    if submission.accepted_ts is None:
        submission = submission.model_copy(update={"accepted_ts": now_ms()})
    stored = await runtime.outbox.put(
        SUBMISSION_KIND,
        _json_body(submission),
        priority_class=PriorityClass.TRANSACTION,
        tx_id=_tx_id(tx_id),
        materials=[m.ref for m in submission.materials],
    )
    log.info("submission %s accepted (item %s)", stored.tx_id, submission.item_code)
    return stored.tx_id


class MaterialUnavailable(InvalidTransaction):
    """A material's bytes cannot be had; ``index`` is its place in the request.

    ``reason``: ``unknown_document`` (the capture it names is unknown or expired),
    ``not_base64`` or ``empty``.
    """

    def __init__(
        self,
        message: str,
        *,
        index: int,
        reason: Literal["unknown_document", "not_base64", "empty"],
    ) -> None:
        super().__init__(message, fields=(f"materials.{index}",))
        self.index = index
        self.reason = reason


class MaterialSource(Protocol):
    """One material as the clerk gives it: a capture's ``document_id`` or base64 bytes."""

    @property
    def name(self) -> str: ...
    @property
    def document_id(self) -> str | None: ...
    @property
    def data_base64(self) -> str | None: ...
    @property
    def pages(self) -> int | None: ...
    @property
    def original(self) -> bool: ...


def material_id_for(tx_id: str, index: int) -> str:
    """A material id fixed by the transaction and the position, so a retry reuses it."""
    return hashlib.sha256(f"{tx_id}/{index}".encode()).hexdigest()[:40]


def _material_bytes(
    index: int, material: MaterialSource, documents: Callable[[str], bytes | None]
) -> bytes:
    if material.document_id is not None:
        data = documents(material.document_id)
        if data is None:
            raise MaterialUnavailable(
                f"materials[{index}]: document {material.document_id} is unknown or expired",
                index=index,
                reason="unknown_document",
            )
        return data
    try:
        data = base64.b64decode(material.data_base64 or "", validate=True)
    except (binascii.Error, ValueError):
        raise MaterialUnavailable(
            f"materials[{index}].data_base64 is not valid base64", index=index, reason="not_base64"
        ) from None
    if not data:
        raise MaterialUnavailable(f"materials[{index}] is empty", index=index, reason="empty")
    return data


async def file_submission_with_materials(
    runtime: AgentRuntime,
    body: Mapping[str, Any],
    materials: Sequence[MaterialSource],
    *,
    documents: Callable[[str], bytes | None],
    tx_id: str,
) -> tuple[str, int]:
    """Store each material, then file the submission naming them: ``(tx_id, materials)``.

    ``body`` is the submission without ``materials``; ``documents`` gives a capture's
    bytes by id. Every material is read before any is stored, so a bad one stores
    nothing; the material ids derive from ``tx_id``, so a retry stores none twice.
    """
    blobs = [_material_bytes(i, m, documents) for i, m in enumerate(materials)]
    refs: list[dict[str, Any]] = []
    for index, (material, data) in enumerate(zip(materials, blobs, strict=True)):
        progress = await runtime.outbox.put_material(
            data, material_id=material_id_for(tx_id, index)
        )
        ref: dict[str, Any] = {"name": material.name, "ref": progress.material_id}
        if material.pages is not None:
            ref["pages"] = material.pages
        if material.original:
            ref["original"] = True
        refs.append(ref)
    stored = await file_submission(runtime, {**body, "materials": refs}, tx_id=tx_id)
    return stored, len(refs)


async def record_evaluation(
    runtime: AgentRuntime,
    outcome: EvaluationOutcome,
    *,
    case_number: str | None = None,
    region_code: str | None = None,
    tx_id: str | None = None,
    receipt: Receipt | None = None,
) -> str:
    """Put a rated 好差评 outcome from the pad into the outbox; return its ``tx_id``.

    Only a ``RATED`` outcome is an evaluation (a walk-away is not): others raise
    ``InvalidTransaction``. ``case_number`` defaults to the request's ``case_no``. The
    default ``tx_id`` is derived from the pad request id, so recording the same outcome
    twice stores one transaction. ``receipt`` (the answer for a retry under the client's
    ``Idempotency-Key`` = ``tx_id``) commits in the same SQLite transaction.
    """
    result = outcome.result
    if outcome.status is not OutcomeStatus.RATED or result is None:
        raise InvalidTransaction(
            f"evaluation was not rated ({outcome.status.value}); nothing to record",
            fields=("status",),
        )
    request = outcome.request
    record = {
        "level_code": result.level_code,
        "stars": result.stars,
        "channel": str(result.pf),
        "tags": list(result.tags),
        "text": result.text or None,
        "window": request.window,
        "case_number": case_number or request.case_no,
        "evaluated_ts": _local_ms(result.assess_time, runtime),
        "assess_number": request.assess_number,
        "item_code": request.item_code or None,
        "region_code": region_code,
        "clerk": request.staff_id or None,
    }
    evaluation = _validate(EvaluationBody, record, what=EVALUATION_KIND)
    stored = await runtime.outbox.put(
        EVALUATION_KIND,
        _json_body(evaluation),
        priority_class=PriorityClass.TRANSACTION,
        tx_id=_tx_id(tx_id, fallback=f"eval-{request.request_id}"),
        receipt=receipt,
    )
    log.info("evaluation %s accepted (window %s)", stored.tx_id, request.window)
    return stored.tx_id


async def record_default_evaluation(
    runtime: AgentRuntime, record: Mapping[str, Any], *, tx_id: str
) -> str:
    """Put a 系统默认评价 (an ``evaluation`` with ``system_default``) into the outbox.

    ``tx_id`` is derived from the pad request that timed out, so recording it again
    (after a crash between the outbox and forgetting it) stores one transaction.
    """
    evaluation = _validate(EvaluationBody, {**record, "system_default": True}, what=EVALUATION_KIND)
    stored = await runtime.outbox.put(
        EVALUATION_KIND,
        _json_body(evaluation),
        priority_class=PriorityClass.TRANSACTION,
        tx_id=_tx_id(tx_id),
    )
    log.info("default evaluation %s accepted (window %s)", stored.tx_id, evaluation.window)
    return stored.tx_id


async def record_queue_event(runtime: AgentRuntime, event: Mapping[str, Any]) -> str:
    """Put a queue event (``QueueResult.event``) into the outbox; return its ``tx_id``.

    The event's own ``id`` becomes the ``tx_id`` and its ``kind`` (``queue.call`` ...)
    the ``tx_kind``, so recording one event twice stores it once (while it is pending).
    Queue events hold no personal data (ticket numbers and windows only). The agent
    itself uses ``relay_queue_events``, which survives a crash between the queue
    operation and this put; this single put is for events from elsewhere.
    """
    kind, tx_id, body = _queue_entry(event)
    stored = await runtime.outbox.put(
        kind, body, priority_class=PriorityClass.TRANSACTION, tx_id=tx_id
    )
    log.debug("queue event %s stored as %s", kind, stored.tx_id)
    return stored.tx_id


async def relay_queue_events(runtime: AgentRuntime) -> int:
    """Put every queue event the outbox does not have yet, oldest first; count them.

    The queue engine writes each operation's event in the same SQLite transaction as the
    operation; the outbox keeps a cursor (the last event sequence it holds) committed
    with each event's entry. Replaying ``queue.events_after(cursor)`` is therefore
    exactly once whenever it runs: at start (an agent killed between an operation and
    its put loses nothing) and after each operation. A failure (``OutboxFull``,
    ``StorageError``) leaves the rest for the next run, in order. An event that can
    never be a transaction (not ``queue.*``) is skipped with an error log.
    """
    put = 0
    while True:
        cursor = await runtime.outbox.cursor(QUEUE_EVENTS_STREAM)
        events = await runtime.queue.events_after(cursor, limit=_RELAY_BATCH)
        if not events:
            return put
        for seq, event in events:
            try:
                kind, tx_id, body = _queue_entry(event)
            except InvalidTransaction as exc:
                log.error(  # noqa: TRY400 - one line: the reason is in the message
                    "queue event #%d is not a transaction (%s); skipped", seq, exc
                )
                await runtime.outbox.skip_in_sequence(stream=QUEUE_EVENTS_STREAM, position=seq)
                continue
            stored = await runtime.outbox.put_in_sequence(
                kind,
                body,
                stream=QUEUE_EVENTS_STREAM,
                position=seq,
                priority_class=PriorityClass.TRANSACTION,
                tx_id=tx_id,
            )
            if stored is not None:
                put += 1
                log.debug("queue event #%d %s stored as %s", seq, kind, tx_id)


def _queue_entry(event: Mapping[str, Any]) -> tuple[str, str, dict[str, JsonValue]]:
    kind = event.get("kind")
    if not isinstance(kind, str) or not kind.startswith(QUEUE_KIND_PREFIX) or len(kind) > 64:
        raise InvalidTransaction("queue event kind must be 'queue.<operation>'", fields=("kind",))
    event_id = event.get("id")
    body: dict[str, JsonValue] = {
        str(key): value for key, value in event.items() if _is_json(value) and key != "id"
    }
    if oversize := queue_event_oversize(body):
        raise InvalidTransaction(oversize, fields=("body",))
    return kind, _tx_id(event_id if isinstance(event_id, str) else None), body


def _is_json(value: object) -> bool:
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list | tuple):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def _local_ms(assess_time: str, runtime: AgentRuntime) -> int:
    """``yyyy-MM-dd HH:mm:ss`` in the outlet's zone as epoch ms; now if unreadable."""
    try:
        moment = datetime.strptime(assess_time, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return now_ms()
    return int(moment.replace(tzinfo=runtime.queue.tz).timestamp() * 1000)
