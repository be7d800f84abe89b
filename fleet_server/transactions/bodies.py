"""The body shapes of transactions, validated on ingest before anything is stored.

``tx_kind`` names the shape: ``submission`` (办件, hardware.md §7.2), ``evaluation``
(好差评 record, §3.3), ``material.chunk`` (one piece of a scanned material; stored
apart, see ``fleet_server.transactions.materials``) and ``queue_event`` (or any
``queue.*`` name; kept server-side, no upstream). A body that does not fit is rejected
with a reason naming the fields, never their values: the values may be personal data.

One strictness rule, the same as the outlet's (``edge_agent.transactions``): a closed
shape (submission, evaluation, material chunk) refuses any field it does not define, at
every level, so nothing but validated fields is ever stored or forwarded upstream; a
queue event (whose fields vary by operation) is refused past ``QUEUE_EVENT_MAX_BYTES``
of compact JSON or ``QUEUE_EVENT_MAX_KEYS`` keys. A submission may name each material
once (``ref`` unique).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final, Literal

from pydantic import (
    Base64Bytes,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from fleet_server.pii import mask_id_number, mask_name

__all__ = [
    "QUEUE_EVENT_MAX_BYTES",
    "QUEUE_EVENT_MAX_KEYS",
    "BodyRejected",
    "EvaluationBody",
    "MaterialChunkBody",
    "ParsedBody",
    "QueueEventBody",
    "SubmissionBody",
    "parse_body",
]

Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_.\-]+$")]
RegionCode = Annotated[str, Field(pattern=r"^[0-9]{2,12}$")]
Short = Annotated[str, Field(min_length=1, max_length=64)]
# Milliseconds since the epoch up to 9999-12-31: beyond that ``datetime`` overflows.
EpochMs = Annotated[int, Field(ge=0, le=253_402_300_799_999)]
# A material's id as the outlet stores it (``edge_agent.outbox``): chunk ids derive from it.
MaterialId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{8,48}$")]
_MAX_MATERIALS: Final = 200
# Queue events are an open shape: bounded by size instead (the outlet applies the same).
QUEUE_EVENT_MAX_BYTES: Final = 4096
QUEUE_EVENT_MAX_KEYS: Final = 32


class BodyRejected(ValueError):
    """A transaction body does not fit its kind; ``reason`` names fields only.

    ``code`` is counted: ``invalid``, ``unknown_fields`` (a field the shape does not
    define) or ``oversize`` (a queue event over its bounds).
    """

    def __init__(self, reason: str, *, code: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Applicant(_Body):
    """申请者: a person or legal entity. ``name`` and ``id_number`` are PII."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    # 证件类型代码 (GA/T 2000.156); 111 = 居民身份证.
    id_type: Annotated[str, Field(pattern=r"^[0-9]{3}$")] = "111"
    id_number: Annotated[str, Field(min_length=4, max_length=64)]
    # userProp: 1 个人, 2 法人.
    kind: Literal[1, 2] = 1
    phone: Annotated[str, Field(max_length=32)] | None = None

    def __repr__(self) -> str:
        return (
            f"Applicant(name={mask_name(self.name)!r}, "
            f"id_number={mask_id_number(self.id_number)!r}, kind={self.kind})"
        )

    __str__ = __repr__


class MaterialRef(_Body):
    """A scanned material, referenced by the id the outlet uploaded it under."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    ref: MaterialId
    pages: Annotated[int, Field(ge=0, le=10_000)] | None = None
    original: bool = False


class SubmissionBody(_Body):
    """A case (办件) filed at the counter: GB/T 39046 tables 5-6 and ``up_pro_accept``."""

    item_code: Code
    region_code: RegionCode
    applicant: Applicant
    agent: Applicant | None = None  # 代理人 for 代办
    materials: list[MaterialRef] = Field(default_factory=list, max_length=_MAX_MATERIALS)
    window: Short
    clerk: Short
    case_number: Code | None = None  # 办件编号, when the window system already has one
    apply_source: Short | None = None  # 申报来源代码
    handling_mode: Literal["direct", "agency"] | None = None
    outlet_kind: Short | None = None
    accepted_ts: EpochMs | None = None
    note: Annotated[str, Field(max_length=2000)] | None = None

    @field_validator("materials")
    @classmethod
    def _each_material_once(cls, value: list[MaterialRef]) -> list[MaterialRef]:
        if len({material.ref for material in value}) != len(value):
            raise ValueError("a material is referenced more than once")
        return value


class EvaluationBody(_Body):
    """A 好差评 evaluation record (hardware.md §3.3).

    ``level_code`` is in the province's coding (see ``fleet_server.evaluations.rules``);
    ``stars`` (5 best), when the pad sends it too, must agree with it.
    """

    level_code: Annotated[int, Field(ge=1, le=5)]
    stars: Annotated[int, Field(ge=1, le=5)] | None = None
    channel: Annotated[str, Field(pattern=r"^[0-9]{1,2}$")]
    tags: list[Short] = Field(default_factory=list, max_length=32)
    text: Annotated[str, Field(max_length=2000)] | None = None
    window: Short
    case_number: Code | None = None
    evaluated_ts: EpochMs
    assess_number: Literal[1, 2] = 1
    anonymous: bool = False
    item_code: Code | None = None
    region_code: RegionCode | None = None
    clerk: Short | None = None

    @field_validator("tags")
    @classmethod
    def _unique_tags(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
MATERIAL_CHUNK_KIND: Final = "material.chunk"


class MaterialChunkBody(_Body):
    """One chunk of a material (docs/outbox.md, "Material transfer").

    ``sha256``, ``size`` and ``count`` describe the whole material and are repeated in
    every chunk; ``chunk_sha256`` is this chunk's; ``data`` arrives base64 and is held
    here decoded.
    """

    material_id: MaterialId
    index: Annotated[int, Field(ge=0)]
    count: Annotated[int, Field(ge=1, le=1_000_000)]
    size: Annotated[int, Field(ge=1)]
    sha256: Sha256Hex
    chunk_sha256: Sha256Hex
    data: Base64Bytes

    def __repr__(self) -> str:
        return f"MaterialChunkBody({self.material_id}.c{self.index}/{self.count})"

    __str__ = __repr__


class QueueEventBody(_Body):
    """A queue event (ticket issued, called, served); only ``kind`` is required."""

    model_config = ConfigDict(frozen=True, extra="allow")

    kind: Short | None = None


ParsedBody = SubmissionBody | EvaluationBody | MaterialChunkBody | QueueEventBody

_SHAPES: Final[dict[str, type[SubmissionBody | EvaluationBody | MaterialChunkBody]]] = {
    "submission": SubmissionBody,
    "evaluation": EvaluationBody,
    MATERIAL_CHUNK_KIND: MaterialChunkBody,
}


def is_queue_kind(tx_kind: str) -> bool:
    """Queue events are stored but never routed upstream."""
    return tx_kind == "queue_event" or tx_kind.startswith("queue.")


def _reason(tx_kind: str, exc: ValidationError) -> tuple[str, bool]:
    """Which fields are wrong (and why, for our own rules; never a value), and whether
    any of them is a field the shape does not define."""
    bad: set[str] = set()
    unknown: set[str] = set()
    why: set[str] = set()
    for error in exc.errors():
        where = ".".join(str(part)[:32] for part in error["loc"]) or "body"
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


def _check_queue_event(body: dict[str, Any]) -> None:
    if len(body) > QUEUE_EVENT_MAX_KEYS:
        raise BodyRejected(
            f"queue event has more than {QUEUE_EVENT_MAX_KEYS} fields", code="oversize"
        )
    size = len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
    if size > QUEUE_EVENT_MAX_BYTES:
        raise BodyRejected(f"queue event is over {QUEUE_EVENT_MAX_BYTES} bytes", code="oversize")


def parse_body(tx_kind: str, body: dict[str, Any]) -> ParsedBody:
    """Validate ``body`` for ``tx_kind``; raise ``BodyRejected`` naming the bad fields."""
    if is_queue_kind(tx_kind):
        shape: type[_Body] = QueueEventBody
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
    if isinstance(parsed, QueueEventBody):
        _check_queue_event(body)
    if not isinstance(parsed, SubmissionBody | EvaluationBody | MaterialChunkBody | QueueEventBody):
        raise BodyRejected("internal: unexpected body shape")
    return parsed
