"""好差评 rules that differ by province (docs/evaluations.md), as one frozen object.

Sources disagree on the direction of the level codes (GB/T 39046 A.8: 1 = 非常满意;
Zhejiang: 1 = 非常不满意), on channel codes 6/7 and on the 整改 deadline (15 working
days in Sichuan, 15 days in Zhejiang, 10 working days in Taiyuan, 5 in Dezhou). A
built-in profile is chosen by ``GOVEDGE_EVALUATION_PROFILE``; the deadline can be
overridden by ``GOVEDGE_RECTIFICATION_DAYS`` / ``GOVEDGE_RECTIFICATION_WORKING_DAYS``.
Working days skip Saturdays and Sundays only: public holidays are not known here.

The fleet config's ``evaluation`` part (``govedge_wire.config.EvaluationConfig``) has the
same fields: ``EvaluationRules.to_config`` writes a profile as one, ``with_config`` lays
an outlet's part over the server's profile (docs/config.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Final

from govedge_wire.config import EvaluationConfig
from govedge_wire.config.models import LevelCoding

__all__ = ["PROFILES", "EvaluationRules", "LevelCoding", "rules_for", "with_config"]

LEVEL_NAMES: Final = {5: "非常满意", 4: "满意", 3: "基本满意", 2: "不满意", 1: "非常不满意"}

_NATIONAL_CHANNELS: Final = MappingProxyType(
    {
        "1": "PC",
        "2": "移动端",
        "3": "二维码",
        "4": "政务大厅平板电脑",
        "5": "政务大厅其他终端",
        "6": "电话",
        "7": "短信",
    }
)
_ZHEJIANG_CHANNELS: Final = MappingProxyType(
    {**_NATIONAL_CHANNELS, "6": "短信", "7": "系统默认评价"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationRules:
    """How one province codes and handles evaluations."""

    name: str
    level_coding: LevelCoding
    channels: MappingProxyType[str, str]
    # Channels whose evaluations are defaults (no citizen acted): not "active".
    default_channels: frozenset[str] = field(default_factory=frozenset)
    rectification_days: int = 15
    rectification_working_days: bool = True
    # What the agents record for an unrated case (None: nothing), and after how long.
    default_stars: int | None = None
    default_after_s: int | None = None
    active_rate_target: float = 0.60

    def stars(self, level_code: int) -> int:
        """Normalise a level code to stars, 5 = 非常满意 … 1 = 非常不满意."""
        if not 1 <= level_code <= 5:
            raise ValueError("level code must be 1-5")
        return 6 - level_code if self.level_coding == "gbt39046" else level_code

    @staticmethod
    def is_bad(stars: int) -> bool:
        """差评 = 不满意 or 非常不满意."""
        return stars <= 2

    def is_default(self, channel: str) -> bool:
        """Whether the channel means a default (system) evaluation."""
        return channel in self.default_channels

    def known_channel(self, channel: str) -> bool:
        """Whether this province has the channel code."""
        return channel in self.channels

    def deadline(self, opened_at: datetime) -> datetime:
        """The 整改 deadline for a ticket opened at ``opened_at``."""
        if not self.rectification_working_days:
            return opened_at + timedelta(days=self.rectification_days)
        day, left = opened_at, self.rectification_days
        while left > 0:
            day += timedelta(days=1)
            if day.weekday() < 5:
                left -= 1
        return day

    def to_config(self) -> EvaluationConfig:
        """These rules as the fleet config's ``evaluation`` part (no ``indicator_tags``:
        those are the pad's, not the server's); raises if a value is out of its range."""
        return EvaluationConfig(
            level_coding=self.level_coding,
            channels=dict(self.channels),
            default_channels=tuple(sorted(self.default_channels, key=int)),
            rectification_days=self.rectification_days,
            rectification_working_days=self.rectification_working_days,
            default_stars=self.default_stars,
            default_after_s=self.default_after_s,
        )


PROFILES: Final = MappingProxyType(
    {
        "national": EvaluationRules(
            name="national", level_coding="gbt39046", channels=_NATIONAL_CHANNELS
        ),
        "zhejiang": EvaluationRules(
            name="zhejiang",
            level_coding="zhejiang",
            channels=_ZHEJIANG_CHANNELS,
            default_channels=frozenset({"7"}),
            rectification_days=15,
            rectification_working_days=False,
            default_stars=5,  # 非常满意
            default_after_s=7 * 86400,
        ),
        "sichuan": EvaluationRules(
            name="sichuan", level_coding="gbt39046", channels=_NATIONAL_CHANNELS
        ),
        "taiyuan": EvaluationRules(
            name="taiyuan",
            level_coding="gbt39046",
            channels=_NATIONAL_CHANNELS,
            rectification_days=10,
        ),
        "dezhou": EvaluationRules(
            name="dezhou",
            level_coding="gbt39046",
            channels=_NATIONAL_CHANNELS,
            rectification_days=5,
        ),
    }
)


def rules_for(
    profile: str, *, days: int | None = None, working_days: bool | None = None
) -> EvaluationRules:
    """The named profile with optional deadline overrides; ``KeyError`` if unknown."""
    rules = PROFILES[profile]
    if days is not None:
        rules = replace(rules, rectification_days=days)
    if working_days is not None:
        rules = replace(rules, rectification_working_days=working_days)
    return rules


def with_config(base: EvaluationRules, config: EvaluationConfig) -> EvaluationRules:
    """``base`` with every field that ``config`` sets replaced by the config's value.

    The name says which coding and channels result: ``base``'s own name when they are
    still ``base``'s, else the first built-in profile that has them, else ``config``. The
    deadline does not change the name (as with the settings' overrides).
    """
    sets_defaults = config.default_channels is not None or config.default_stars is not None
    rules = replace(
        base,
        level_coding=config.level_coding or base.level_coding,
        channels=(
            base.channels if config.channels is None else MappingProxyType(dict(config.channels))
        ),
        default_channels=(
            base.default_channels
            if config.default_channels is None
            else frozenset(config.default_channels)
        ),
        rectification_days=config.rectification_days or base.rectification_days,
        rectification_working_days=(
            base.rectification_working_days
            if config.rectification_working_days is None
            else config.rectification_working_days
        ),
        # A part that says which channels are defaults says what a default is, too: a
        # profile without one (no default_stars) over one with it records none.
        default_stars=config.default_stars if sets_defaults else base.default_stars,
        default_after_s=config.default_after_s if sets_defaults else base.default_after_s,
    )
    for candidate in (base, *PROFILES.values()):
        if _same_coding(rules, candidate):
            return replace(rules, name=candidate.name)
    return replace(rules, name="config")


def _same_coding(one: EvaluationRules, other: EvaluationRules) -> bool:
    return (one.level_coding, dict(one.channels), one.default_channels) == (
        other.level_coding,
        dict(other.channels),
        other.default_channels,
    )
