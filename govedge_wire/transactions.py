"""Transaction bodies: the shapes and limits the outlet and the fleet server both enforce.

``tx_kind`` names the shape: ``submission`` (办件), ``evaluation`` (好差评 record),
``material.chunk`` (one piece of a scanned material) and ``queue_event`` or any
``queue.*`` name. The agent validates a body here before its outbox takes it, the server
validates the same body here again on ingest: one definition, so a body the counter
accepted is never refused upstream for its shape (docs/transactions.md, "One
strictness rule").

The rule: a closed shape (submission, evaluation, material chunk) refuses any field it
does not define, at every level; a queue event (fields vary by operation) is refused
past ``QUEUE_EVENT_MAX_BYTES`` of compact JSON or ``QUEUE_EVENT_MAX_KEYS`` keys; a
submission names each material once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import Base64Bytes, BaseModel, ConfigDict, Field, field_validator

from govedge_wire.pii import mask_id_number, mask_name

__all__ = [
    "EVALUATION_KIND",
    "MATERIAL_CHUNK_KIND",
    "MAX_MATERIALS",
    "QUEUE_EVENT_KIND",
    "QUEUE_EVENT_MAX_BYTES",
    "QUEUE_EVENT_MAX_KEYS",
    "QUEUE_KIND_PREFIX",
    "SUBMISSION_KIND",
    "Applicant",
    "Code",
    "EpochMs",
    "EvaluationBody",
    "MaterialChunkBody",
    "MaterialId",
    "MaterialRef",
    "Name",
    "Note",
    "Pages",
    "QueueEventBody",
    "RegionCode",
    "Short",
    "SubmissionBody",
    "TransactionBody",
    "is_queue_kind",
    "queue_event_oversize",
]

SUBMISSION_KIND: Final = "submission"
EVALUATION_KIND: Final = "evaluation"
MATERIAL_CHUNK_KIND: Final = "material.chunk"
QUEUE_EVENT_KIND: Final = "queue_event"
QUEUE_KIND_PREFIX: Final = "queue."

Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_.\-]+$")]
RegionCode = Annotated[str, Field(pattern=r"^[0-9]{2,12}$")]
Short = Annotated[str, Field(min_length=1, max_length=64)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Note = Annotated[str, Field(max_length=2000)]
Pages = Annotated[int, Field(ge=0, le=10_000)]
# Milliseconds since the epoch up to 9999-12-31: beyond that ``datetime`` overflows.
EpochMs = Annotated[int, Field(ge=0, le=253_402_300_799_999)]
# A material's id as the outlet's outbox stores it: chunk ids derive from it.
MaterialId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{8,48}$")]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
# 证件类型代码 (GA/T 2000.156); 111 = 居民身份证.
IdType = Annotated[str, Field(pattern=r"^[0-9]{3}$")]
IdNumber = Annotated[str, Field(min_length=4, max_length=64)]
Phone = Annotated[str, Field(max_length=32)]
MAX_MATERIALS: Final = 200
# Queue events are an open shape: bounded by size instead.
QUEUE_EVENT_MAX_BYTES: Final = 4096
QUEUE_EVENT_MAX_KEYS: Final = 32


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Applicant(_Body):
    """申请者 or 代理人: a person or legal entity. ``name`` and ``id_number`` are PII."""

    name: Name
    id_type: IdType = "111"
    id_number: IdNumber
    kind: Literal[1, 2] = 1  # userProp: 1 个人, 2 法人
    phone: Phone | None = None

    def __repr__(self) -> str:  # masked: a body may end up in a log line
        return (
            f"Applicant(name={mask_name(self.name)!r}, "
            f"id_number={mask_id_number(self.id_number)!r}, kind={self.kind})"
        )

    __str__ = __repr__


class MaterialRef(_Body):
    """A scanned material, referenced by the ``material_id`` the outlet stored it under."""

    name: Name
    ref: MaterialId
    pages: Pages | None = None
    original: bool = False


class SubmissionBody(_Body):
    """A case (办件) filed at the counter: GB/T 39046 tables 5-6 and ``up_pro_accept``."""

    item_code: Code
    region_code: RegionCode
    applicant: Applicant
    agent: Applicant | None = None  # 代理人 for 代办
    materials: list[MaterialRef] = Field(default_factory=list, max_length=MAX_MATERIALS)
    window: Short
    clerk: Short
    case_number: Code | None = None  # 办件编号, when the window system already has one
    apply_source: Short | None = None  # 申报来源代码
    handling_mode: Literal["direct", "agency"] | None = None
    outlet_kind: Short | None = None
    accepted_ts: EpochMs | None = None
    note: Note | None = None

    @field_validator("materials")
    @classmethod
    def _each_material_once(cls, value: list[MaterialRef]) -> list[MaterialRef]:
        if len({material.ref for material in value}) != len(value):
            raise ValueError("a material is referenced more than once")
        return value


class EvaluationBody(_Body):
    """A 好差评 evaluation record (docs/evaluations.md).

    ``level_code`` is in the province's coding; ``stars`` (5 best), when the pad sends
    it too, must agree with it (the server checks that against the profile).
    """

    level_code: Annotated[int, Field(ge=1, le=5)]
    stars: Annotated[int, Field(ge=1, le=5)] | None = None
    channel: Annotated[str, Field(pattern=r"^[0-9]{1,2}$")]
    tags: list[Short] = Field(default_factory=list, max_length=32)
    text: Note | None = None
    window: Short
    case_number: Code | None = None
    evaluated_ts: EpochMs
    assess_number: Literal[1, 2] = 1
    anonymous: bool = False
    item_code: Code | None = None
    region_code: RegionCode | None = None
    clerk: Short | None = None
    # Made by the system (系统默认评价), not the citizen: counted apart from their own.
    system_default: bool = False

    @field_validator("tags")
    @classmethod
    def _unique_tags(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


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
    """A queue event (ticket issued, called, served); open, bounded by size instead."""

    model_config = ConfigDict(frozen=True, extra="allow")

    kind: Short | None = None


TransactionBody = SubmissionBody | EvaluationBody | MaterialChunkBody | QueueEventBody


def is_queue_kind(tx_kind: str) -> bool:
    """Queue events: stored by the server, never routed upstream."""
    return tx_kind == QUEUE_EVENT_KIND or tx_kind.startswith(QUEUE_KIND_PREFIX)


def queue_event_oversize(body: Mapping[str, Any]) -> str | None:
    """Why a queue event body is over its bounds, or None if it fits."""
    if len(body) > QUEUE_EVENT_MAX_KEYS:
        return f"queue event has more than {QUEUE_EVENT_MAX_KEYS} fields"
    size = len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
    if size > QUEUE_EVENT_MAX_BYTES:
        return f"queue event is over {QUEUE_EVENT_MAX_BYTES} bytes"
    return None
