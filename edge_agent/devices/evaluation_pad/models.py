"""Value objects of an evaluation: the request shown on the pad and what came back."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from edge_agent.devices.evaluation_pad.levels import PF_PAD


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationRequest:
    """What the pad shows: which window, case (办件编号), staff member and service item."""

    request_id: str
    window: str
    case_no: str
    staff_id: str
    item_code: str = ""
    item_name: str = ""
    assess_number: int = 1  # 1 = first evaluation, 2 = 追评
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.case_no or len(self.case_no) > 50:
            raise ValueError("case_no (办件编号) must be 1-50 characters")
        if self.assess_number not in (1, 2):
            raise ValueError("assess_number must be 1 (first) or 2 (追评)")
        if not 1 <= self.timeout_s <= 3600:
            raise ValueError("timeout_s must be within 1-3600 seconds")
        if not self.window:
            raise ValueError("window must not be empty")


class OutcomeStatus(Enum):
    """How an evaluation request ended."""

    RATED = "rated"
    TIMED_OUT = "timed_out"  # the citizen walked away; no rating
    CANCELLED = "cancelled"  # the clerk took the request off the pad


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationResult:
    """A rating, with the raw stars (5 = best) and the province-coded level side by side."""

    stars: int
    level_code: int
    level_coding: str
    satisfaction: str  # 非常满意 … 非常不满意
    score: int
    is_bad: bool
    tags: tuple[str, ...] = ()
    text: str = ""
    assess_time: str  # yyyy-MM-dd HH:mm:ss, outlet local time, stamped by the agent
    pad_time: str = ""  # the pad's own clock, for diagnosis only
    pf: int = PF_PAD


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationOutcome:
    """The end of one request: a result, or ``TIMED_OUT`` after ``waited_s`` seconds."""

    request: EvaluationRequest
    status: OutcomeStatus
    result: EvaluationResult | None = None
    waited_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """The evaluation transaction (field names of the province interfaces)."""
        record: dict[str, Any] = {
            "requestId": self.request.request_id,
            "projectNo": self.request.case_no,
            "proManager": self.request.staff_id,
            "taskCode": self.request.item_code,
            "taskName": self.request.item_name,
            "window": self.request.window,
            "pf": PF_PAD,
            "assessNumber": self.request.assess_number,
            "status": self.status.value,
        }
        if self.result is not None:
            record |= {
                "stars": self.result.stars,
                "levelCode": self.result.level_code,
                "levelCoding": self.result.level_coding,
                "satisfaction": self.result.satisfaction,
                "score": self.result.score,
                "isBad": self.result.is_bad,
                "evalDetail": ",".join(self.result.tags),
                "writingEvaluation": self.result.text,
                "assessTime": self.result.assess_time,
            }
        return record
