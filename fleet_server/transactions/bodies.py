"""Transaction bodies on ingest: parse one by its ``tx_kind`` before anything is stored.

The shapes and their limits are ``govedge_wire.transactions`` (the outlet validates with
the same models; docs/transactions.md, "One strictness rule"). This module adds what only
the server does: pick the shape for a ``tx_kind`` and turn a refusal into a reason that
names the fields, never their values (they may be personal data), and a counted code.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ValidationError

from govedge_wire.pii import field_path
from govedge_wire.transactions import (
    EVALUATION_KIND,
    MATERIAL_CHUNK_KIND,
    SUBMISSION_KIND,
    EvaluationBody,
    MaterialChunkBody,
    QueueEventBody,
    SubmissionBody,
    TransactionBody,
    is_queue_kind,
    queue_event_oversize,
)

__all__ = ["BodyRejected", "ParsedBody", "is_queue_kind", "parse_body"]

ParsedBody = TransactionBody


class BodyRejected(ValueError):
    """A transaction body does not fit its kind; ``reason`` names fields only.

    ``code`` is counted: ``invalid``, ``unknown_fields`` (a field the shape does not
    define) or ``oversize`` (a queue event over its bounds).
    """

    def __init__(self, reason: str, *, code: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


_SHAPES: Final[dict[str, type[SubmissionBody | EvaluationBody | MaterialChunkBody]]] = {
    SUBMISSION_KIND: SubmissionBody,
    EVALUATION_KIND: EvaluationBody,
    MATERIAL_CHUNK_KIND: MaterialChunkBody,
}


def _reason(tx_kind: str, exc: ValidationError) -> tuple[str, bool]:
    """Which fields are wrong (and why, for our own rules; never a value), and whether
    any of them is a field the shape does not define."""
    bad: set[str] = set()
    unknown: set[str] = set()
    why: set[str] = set()
    for error in exc.errors():
        # An unknown key is the outlet's, not ours: shaped like personal data, it is "*".
        where = ".".join(field_path(error["loc"])) or "body"
        if error["type"] == "extra_forbidden":
            unknown.add(where)
            continue
        bad.add(where)
        if error["type"] == "value_error":  # our validators' messages name no values
            why.add(str(error["msg"]).removeprefix("Value error, "))
    parts = []
    if bad:
        parts.append(f"invalid {tx_kind} body at: {', '.join(sorted(bad)[:8])}")
    if why:
        parts.append("; ".join(sorted(why)[:3]))
    if unknown:
        more = f" (+{len(unknown) - 8} more)" if len(unknown) > 8 else ""
        parts.append(f"unknown fields refused: {', '.join(sorted(unknown)[:8])}{more}")
    return "; ".join(parts), bool(unknown)


def parse_body(tx_kind: str, body: dict[str, Any]) -> ParsedBody:
    """Validate ``body`` for ``tx_kind``; raise ``BodyRejected`` naming the bad fields."""
    if is_queue_kind(tx_kind):
        shape: type[BaseModel] = QueueEventBody
    else:
        found = _SHAPES.get(tx_kind)
        if found is None:
            raise BodyRejected(f"unknown tx_kind {tx_kind[:32]!r}")
        shape = found
    try:
        parsed = shape.model_validate(body)
    except ValidationError as exc:
        reason, unknown = _reason(tx_kind, exc)
        raise BodyRejected(reason, code="unknown_fields" if unknown else "invalid") from None
    if isinstance(parsed, QueueEventBody) and (oversize := queue_event_oversize(body)):
        raise BodyRejected(oversize, code="oversize")
    if not isinstance(parsed, SubmissionBody | EvaluationBody | MaterialChunkBody | QueueEventBody):
        raise BodyRejected("internal: unexpected body shape")
    return parsed
