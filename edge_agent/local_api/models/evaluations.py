"""Wire shapes of ``/v1/evaluations``: asking the citizen at a window to rate the service,
and the rating (or the timeout) that came back.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from edge_agent.local_api.models.common import DeviceId, StrictIn, examples
from govedge_wire.transactions import Short

__all__ = [
    "DefaultRatingPublic",
    "EvaluationCreate",
    "EvaluationPublic",
    "EvaluationQrPublic",
]


class EvaluationCreate(StrictIn):
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


class DefaultRatingPublic(BaseModel):
    """The region's default rating (系统默认评价) a walk-away gets, from its 好差评 profile.

    ``pending``: it is recorded at ``due_at`` unless the citizen rates the case after all
    (the clerk asks again); ``recorded``: it is in the outbox already (``default_after_s``
    is 0). Either way it is the agent's, not the citizen's, rating.
    """

    model_config = examples(
        {"state": "pending", "tx_id": "default-7f3a9c", "stars": 5,
         "due_at": "2024-05-01T09:32:00Z"},
    )  # fmt: skip

    state: Literal["pending", "recorded"]
    tx_id: str = Field(description="the default evaluation's transaction (GET /v1/transactions)")
    stars: int = Field(description="the stars it records (the profile's default_stars)")
    due_at: str = Field(description="when it is (or was) recorded, UTC, ISO 8601")


class EvaluationPublic(BaseModel):
    """How it ended: ``rated`` (recorded, ``tx_id`` set) or ``timed_out`` (nothing recorded).

    ``timed_out`` with ``default_rating``: the citizen did not rate, and the region's
    profile gives the case a default rating instead (pending or recorded).
    ``replayed: true``: a retry under the same ``Idempotency-Key`` got the rating recorded
    earlier; the pad was not asked again.
    """

    model_config = examples(
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
        {"status": "timed_out", "tx_id": None, "window": "3", "device_id": "pad-3",
         "waited_s": 60.0,
         "default_rating": {"state": "pending", "tx_id": "default-7f3a9c", "stars": 5,
                            "due_at": "2024-05-01T09:32:00Z"}},
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
    default_rating: DefaultRatingPublic | None = Field(
        default=None,
        description="timed_out only: the default rating the region's profile gives the case "
        "instead (null: the profile has none)",
    )
    replayed: bool = Field(
        default=False,
        description="true: the answer recorded for this Idempotency-Key earlier (a retry); "
        "the pad was not asked again",
    )


class EvaluationQrPublic(BaseModel):
    """The 好差评 QR code of a window without a pad, for the counter screen.

    ``url`` and ``svg`` are null when the window has a pad (``pad``: rate there), no
    ``evaluation_qr_url`` template is set, or there is no case to rate (no case number
    given and no ticket at the window).
    """

    model_config = examples(
        {
            "window": "5",
            "pad": None,
            "case_number": "T20240501-B012",
            "url": "https://hcp.example.gov.cn/evaluate?case=T20240501-B012&outlet=zs-01",
            "svg": '<svg xmlns="http://www.w3.org/2000/svg" …</svg>',
        }
    )

    window: str
    pad: str | None = Field(description="the window's evaluation pad; null: none")
    case_number: str | None = Field(description="the case the code rates")
    url: str | None = Field(description="the province's 好差评 page of the case")
    svg: str | None = Field(description="url as an SVG QR code (show it as an image)")
