"""Driver settings of kind ``evaluation_pad``: what its profile (and local config) may set."""

from __future__ import annotations

from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from edge_agent.devices.evaluation_pad.levels import (
    LevelCoding,
)
from edge_agent.devices.settings import Baudrate, DriverSettings, seconds

DEFAULT_TAGS: Final = (
    {"code": "overall", "label": "整体满意度"},
    {"code": "efficiency", "label": "服务效率"},
    {"code": "skill", "label": "服务水平"},
    {"code": "attitude", "label": "服务态度"},
)


class IndicatorTag(DriverSettings):
    """One option shown on the pad beside the five levels."""

    code: str = Field(min_length=1, max_length=32)
    label: str = Field(min_length=1, max_length=32)


class EvaluationPadSettings(DriverSettings):
    """Settings keys of ``haochaping_pad``; times in seconds."""

    baudrate: Baudrate = 9600
    ack_timeout: float = seconds(1.0, "wait for the pad's ACK", most=30)
    retries: int = Field(default=2, ge=0, le=10, description="resends after silence")
    walkaway_timeout: float = seconds(60.0, "told to the pad: the citizen left", most=3600)
    walkaway_grace: float = seconds(5.0, "extra wait before giving up on a silent pad")
    frame_gap: float = seconds(2.0, "silence that drops a partial frame", most=30)
    walkaway_raises: bool = Field(
        default=False, description="a walk-away raises DeviceTimeout instead of TIMED_OUT"
    )
    level_coding: LevelCoding = Field(
        default=LevelCoding.GBT39046, description="gbt39046 (1 = 非常满意) or zhejiang (reversed)"
    )
    timezone: str = Field(default="Asia/Shanghai", description="time zone of rating times")
    indicator_tags: tuple[IndicatorTag, ...] = Field(
        default=tuple(IndicatorTag(**tag) for tag in DEFAULT_TAGS),
        description="options shown with the levels: list of {code, label}",
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value
