"""Wire shapes of ``/v1/submissions``: a case (办件) filed at the counter, with its
applicant and materials, and the answer that the outlet stored it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_agent.local_api.models.common import StrictIn, examples
from govedge_wire.pii import InvalidIdNumber, validate_id_number
from govedge_wire.transactions import (
    MAX_MATERIALS,
    Applicant,
    Code,
    Name,
    Note,
    Pages,
    RegionCode,
    Short,
)

__all__ = ["ApplicantCreate", "MaterialCreate", "SubmissionAccepted", "SubmissionCreate"]


# The transaction's own ``Applicant`` (same fields and limits), plus the check digit of a
# resident ID number, checked here where the clerk can still correct it.
class ApplicantCreate(Applicant):
    """申请人 (or 代理人); personal data: travels only inside the transaction."""

    @field_validator("id_number")
    @classmethod
    def _check(cls, value: str) -> str:
        return value.strip()

    @model_validator(mode="after")
    def _resident_check_digit(self) -> ApplicantCreate:
        if self.id_type == "111":
            try:
                validate_id_number(self.id_number)
            except InvalidIdNumber as exc:  # its message never repeats the number
                raise ValueError(str(exc)) from None
        return self

    def __repr__(self) -> str:
        return f"ApplicantCreate(kind={self.kind})"

    __str__ = __repr__


class MaterialCreate(StrictIn):
    """One material: a capture (``document_id``) or the bytes (``data_base64``)."""

    name: Name
    document_id: Annotated[str, Field(max_length=64)] | None = None
    data_base64: str | None = Field(default=None, repr=False)
    content_type: Annotated[str, Field(max_length=100)] = "image/jpeg"
    pages: Pages | None = None
    original: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> MaterialCreate:
        if (self.document_id is None) == (self.data_base64 is None):
            raise ValueError("give exactly one of document_id and data_base64")
        return self


class SubmissionCreate(StrictIn):
    """A case (办件) filed at the counter."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "item_code": "330100-001-XK",
                    "region_code": "330106",
                    "applicant": {"name": "张三", "id_number": "33010619900101123X"},
                    "materials": [
                        {"name": "身份证复印件", "document_id": "doc-3f2a9c0e1b7d4a5c6e8f9a0b"}
                    ],
                    "window": "3",
                    "clerk": "S007",
                    "handling_mode": "direct",
                }
            ]
        },
    )

    item_code: Code
    region_code: RegionCode
    applicant: ApplicantCreate
    agent: ApplicantCreate | None = None
    materials: list[MaterialCreate] = Field(default_factory=list, max_length=MAX_MATERIALS)
    window: Short
    clerk: Short
    case_number: Code | None = None
    apply_source: Short | None = None
    handling_mode: Literal["direct", "agency"] | None = None
    outlet_kind: Short | None = None
    note: Note | None = None


class SubmissionAccepted(BaseModel):
    """Durably stored at the outlet; it reaches upstream exactly once from here."""

    model_config = examples({"tx_id": "case-2024-05-01-0001", "status": "accepted", "materials": 1})

    tx_id: str
    status: Literal["accepted"] = "accepted"
    materials: int = 0
