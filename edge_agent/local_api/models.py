"""Wire shapes of the local API: ``…Create`` is what the clerk app sends, ``…Public`` what
it gets back. They are never the driver's or the outbox's own types, so those can change
without breaking a clerk app; examples here are what ``/openapi.json`` shows.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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

DeviceId = Annotated[str, Field(min_length=1, max_length=128)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(examples)})


class WarningPublic(BaseModel):
    """Something went wrong beside the main result (ticket issued, but not printed)."""

    code: str
    message: str
    hint: str = ""


# ---- devices -------------------------------------------------------------------------


class DevicePublic(BaseModel):
    """One device: kind, model, state (``ready``/``probing``/``error``/``offline``), health."""

    model_config = _examples(
        {
            "device_id": "sam-serial-bridge.sn-10c4ea60-0001",
            "kind": "id_card_reader",
            "model": "SAM_A",
            "state": "ready",
            "health": {"reads_ok": 12, "connected": True, "level": "ok"},
        }
    )

    device_id: str
    kind: str
    model: str
    state: str
    health: dict[str, float | int | bool | str]


class DeviceList(BaseModel):
    """Every device the agent has seen since it started."""

    devices: list[DevicePublic]


# ---- cards ---------------------------------------------------------------------------


class CardReadCreate(_In):
    """Which reader (default: the first ready one) and what to read."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"examples": [{}, {"fingerprint": True}]}
    )

    device_id: DeviceId | None = None
    fingerprint: bool | None = None
    extra_address: bool | None = None


class IdCardPublic(BaseModel):
    """The full card: only ever in this response body, never logged or in an event."""

    model_config = _examples(
        {
            "device_id": "sam-serial-bridge.sn-10c4ea60-0001",
            "card_type": "resident",
            "name": "张三",
            "sex": "1",
            "sex_label": "男",
            "nation": "01",
            "nation_label": "汉",
            "birth_date": "1990-01-01",
            "address": "浙江省杭州市西湖区某某路1号",
            "id_number": "330106199001011234",
            "authority": "杭州市公安局西湖分局",
            "valid_from": "2015-01-01",
            "valid_to": None,
            "long_term": True,
            "extra_addresses": ["浙江省杭州市滨江区某某路2号", "浙江省杭州市上城区某某街3号"],
            "extra_address": "浙江省杭州市滨江区某某路2号\uff1b浙江省杭州市上城区某某街3号",
            "photo_wlt_base64": "V0xUAAAA…",
            "fingerprint_base64": None,
        }
    )

    device_id: str
    card_type: str
    name: str
    sex: str
    sex_label: str
    nation: str | None
    nation_label: str | None
    birth_date: str
    address: str | None
    id_number: str
    authority: str | None
    valid_from: str
    valid_to: str | None = Field(description="null = 长期 (long-term)")
    long_term: bool
    english_name: str | None
    nationality: str | None
    pass_number: str | None
    issue_count: str | None
    extra_addresses: list[str] = Field(
        description="追加住址 (command 30 03), one entry per address the card holds, in the "
        "card's slot order; empty when not read or the card has none"
    )
    extra_address: str | None = Field(
        description="the same addresses joined with U+FF1B (full-width semicolon), for "
        "older clients; null when there are none. Use extra_addresses"
    )
    photo_wlt_base64: str = Field(
        description="the card's 1024-byte WLT photo; decode it with the licensed vendor library"
    )
    fingerprint_base64: str | None


class SocialSecurityReadCreate(_In):
    """Which reader (default: the first ready one) and how long to wait for a card."""

    device_id: DeviceId | None = None
    wait_s: Annotated[float, Field(gt=0, le=60)] | None = None


class SocialSecurityCardPublic(BaseModel):
    """The social-security card's holder data; only in this response body."""

    model_config = _examples(
        {
            "device_id": "ssc-pcsc-reader.byid-virtual",
            "card_number": "A12345678",
            "region": "330100",
            "card_id_code": "330100D15600000500A1B2C3D4E5F6",
            "name": "张三",
            "id_number": "330106199001011234",
        }
    )

    device_id: str
    card_number: str
    region: str
    card_id_code: str
    name: str
    id_number: str


# ---- documents -----------------------------------------------------------------------


class DocumentCaptureCreate(_In):
    """Which camera (default: the first ready one)."""

    device_id: DeviceId | None = None


class DocumentPublic(BaseModel):
    """A captured still; reference it in a submission by ``document_id`` (kept 30 min)."""

    model_config = _examples(
        {
            "document_id": "doc-3f2a9c0e1b7d4a5c6e8f9a0b",
            "device_id": "uvc-document-camera.byid-usb-eloam",
            "width": 2592,
            "height": 1944,
            "size": 812345,
            "jpeg_base64": "/9j/4AAQSkZJRgABAQ…",
        }
    )

    document_id: str
    device_id: str
    width: int
    height: int
    size: int
    jpeg_base64: str


# ---- evaluations ---------------------------------------------------------------------


class EvaluationCreate(_In):
    """Ask the citizen at ``window`` to rate the service on that window's pad."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "window": "3",
                    "case_number": "330106202405010001",
                    "staff_id": "S007",
                    "item_code": "330100-001-XK",
                    "item_name": "社会保障卡申领",
                    "timeout_s": 60,
                }
            ]
        },
    )

    window: Short
    case_number: Annotated[str, Field(min_length=1, max_length=50, pattern=r"^[0-9A-Za-z_.\-]+$")]
    staff_id: Short
    item_code: Annotated[str, Field(max_length=64, pattern=r"^[0-9A-Za-z_.\-]*$")] = ""
    item_name: Annotated[str, Field(max_length=200)] = ""
    assess_number: Literal[1, 2] = 1
    timeout_s: Annotated[float, Field(ge=5, le=600)] | None = None
    device_id: DeviceId | None = None


class EvaluationPublic(BaseModel):
    """How it ended: ``rated`` (recorded, ``tx_id`` set) or ``timed_out`` (nothing recorded).

    ``replayed: true``: a retry under the same ``Idempotency-Key`` got the rating recorded
    earlier; the pad was not asked again.
    """

    model_config = _examples(
        {
            "status": "rated",
            "tx_id": "eval-5b0c7d1e2f3a4b5c6d7e8f9a0b1c2d3e",
            "window": "3",
            "device_id": "pad-3",
            "stars": 5,
            "level_code": 1,
            "level_coding": "gbt39046",
            "satisfaction": "非常满意",
            "score": 10,
            "is_bad": False,
            "tags": ["attitude"],
            "text": "",
            "assess_time": "2024-05-01 09:31:00",
            "waited_s": 0.0,
        },
        {"status": "timed_out", "tx_id": None, "window": "3", "device_id": "pad-3",
         "waited_s": 60.0},
        {"status": "rated", "tx_id": "eval-case-0001-try", "window": "3",
         "device_id": "pad-3", "stars": 2, "level_code": 4, "level_coding": "gbt39046",
         "satisfaction": "不满意", "score": 3, "is_bad": True, "tags": ["等候时间长"],
         "text": "", "assess_time": "2024-05-01 09:31:00", "waited_s": 0.0,
         "replayed": True},
    )  # fmt: skip

    status: Literal["rated", "timed_out", "cancelled"]
    tx_id: str | None
    window: str
    device_id: str
    stars: int | None = None
    level_code: int | None = None
    level_coding: str | None = None
    satisfaction: str | None = None
    score: int | None = None
    is_bad: bool | None = None
    tags: list[str] = Field(default_factory=list)
    text: str | None = None
    assess_time: str | None = None
    waited_s: float = 0.0
    replayed: bool = Field(
        default=False,
        description="true: the answer recorded for this Idempotency-Key earlier (a retry); "
        "the pad was not asked again",
    )


# ---- queue ---------------------------------------------------------------------------


class TicketCreate(_In):
    """Issue a ticket of one business type (codes: ``GET /v1/queue``)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"examples": [{"business_type": "social"}]}
    )

    business_type: Code
    print: bool = True


class TicketInfo(BaseModel):
    """One ticket of today."""

    number: str
    business_type: str
    status: str
    window: str | None = None
    issued_at: str = ""
    calls: int = 0


class TicketPublic(BaseModel):
    """The issued ticket, how many wait before it, and whether it was printed."""

    model_config = _examples(
        {
            "number": "A012",
            "business_type": "social",
            "business_name": "社保医保",
            "waiting": 5,
            "issued_at": "2024-05-01T09:00:00+08:00",
            "printed": False,
            "tx_id": "5b0c7d1e2f3a4b5c6d7e8f9a0b1c2d3e",
            "warnings": [
                {
                    "code": "paper_out",
                    "message": "printer is out of paper",
                    "hint": "load a new paper roll and close the cover",
                }
            ],
        }
    )

    number: str
    business_type: str
    business_name: str
    waiting: int
    issued_at: str
    printed: bool
    tx_id: str | None
    warnings: list[WarningPublic] = Field(default_factory=list)


class TransferCreate(_In):
    """Where the current ticket goes: another business type or another window."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"examples": [{"to_window": "5"}]}
    )

    to_business_type: Code | None = None
    to_window: Short | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> TransferCreate:
        if (self.to_business_type is None) == (self.to_window is None):
            raise ValueError("give exactly one of to_business_type and to_window")
        return self


class CallBackCreate(_In):
    """Which held or skipped ticket of today to call back (回呼)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"examples": [{"ticket": "A012"}]}
    )

    ticket: Annotated[str, Field(pattern=r"^[A-Z][0-9]{3}$")]


class AnnouncementPublic(BaseModel):
    """The hall announcement: its text, and a WAV to play (None if voice failed)."""

    text: str
    audio_url: str | None


class LedPublic(BaseModel):
    """What the window's LED strip shows, and whether it was shown."""

    lines: list[str]
    shown: bool


class WindowResultPublic(BaseModel):
    """The outcome of one window operation."""

    model_config = _examples(
        {
            "operation": "call",
            "window": "3",
            "ticket": {"number": "A012", "business_type": "social", "status": "called",
                       "window": "3", "issued_at": "2024-05-01T09:00:00+08:00", "calls": 1},
            "waiting": 4,
            "announcement": {"text": "请A012号到3号窗口办理业务",
                             "audio_url": "/v1/announcements/0f1e2d3c4b5a69788796a5b4c3d2e1f0.wav"},
            "led": {"lines": ["请A012号到3号窗口", "等候人数:004"], "shown": True},
            "tx_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "warnings": [],
        }
    )  # fmt: skip

    operation: str
    window: str
    ticket: TicketInfo | None
    waiting: int
    announcement: AnnouncementPublic | None
    led: LedPublic | None
    tx_id: str | None = Field(description="null if the outbox could not take it (see warnings)")
    warnings: list[WarningPublic] = Field(default_factory=list)


class BusinessTypePublic(BaseModel):
    """One queue: code, ticket prefix, name."""

    code: str
    prefix: str
    name: str
    waiting: int


class WindowPublic(BaseModel):
    """One window: what it serves, whether it is paused, who is at it, who waits."""

    window: str
    business_types: list[str]
    paused: bool
    current_ticket: str | None
    waiting: int


class QueueStatePublic(BaseModel):
    """Today's queue at this outlet."""

    model_config = _examples(
        {
            "day": "2024-05-01",
            "business_types": [{"code": "social", "prefix": "A", "name": "社保医保", "waiting": 4}],
            "windows": [{"window": "3", "business_types": ["social"], "paused": False,
                         "current_ticket": "A012", "waiting": 4}],
        }
    )  # fmt: skip

    day: str
    business_types: list[BusinessTypePublic]
    windows: list[WindowPublic]


# ---- submissions ---------------------------------------------------------------------


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


class MaterialCreate(_In):
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


class SubmissionCreate(_In):
    """A case (办件) filed at the counter."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "item_code": "330100-001-XK",
                    "region_code": "330106",
                    "applicant": {"name": "张三", "id_number": "330106199001011234"},
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

    model_config = _examples(
        {"tx_id": "case-2024-05-01-0001", "status": "accepted", "materials": 1}
    )

    tx_id: str
    status: Literal["accepted"] = "accepted"
    materials: int = 0


class TransactionPublic(BaseModel):
    """Where a transaction is: ``waiting`` (in the outbox), ``acked`` (the fleet server
    has it), ``delivered`` (upstream took it; ``case_number`` when it gave one),
    ``rejected`` (``reason``), or ``unknown``."""

    model_config = _examples(
        {"tx_id": "case-2024-05-01-0001", "status": "delivered", "tx_kind": "submission",
         "case_number": "330106240501000123", "reason": None, "attempts": 1},
    )  # fmt: skip

    tx_id: str
    status: Literal["waiting", "acked", "delivered", "rejected", "unknown"]
    tx_kind: str | None = None
    case_number: str | None = None
    reason: str | None = None
    attempts: int | None = None
