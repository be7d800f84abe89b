"""Satisfaction levels of a 好差评 rating, and the province-dependent level codes.

The pad reports ``stars`` 1-5 with 5 = best, which is what the citizen sees. Level codes
disagree between sources (docs/devices/evaluation-pad.md): GB/T 39046 A.8 codes 1 = 非常满意 … 5 =
非常不满意, Zhejiang's interface codes 1 = 非常不满意 … 5 = 非常满意. The driver keeps the
raw stars and adds the code in the configured direction plus a normalised satisfaction.
"""

from __future__ import annotations

from enum import Enum
from typing import Final


class LevelCoding(Enum):
    """Direction of the 满意度代码 (settings key ``level_coding``)."""

    GBT39046 = "gbt39046"  # 1 = 非常满意 … 5 = 非常不满意
    ZHEJIANG = "zhejiang"  # 1 = 非常不满意 … 5 = 非常满意


class Satisfaction(Enum):
    """The five levels, independent of any coding; the value is the national label."""

    VERY_SATISFIED = "非常满意"
    SATISFIED = "满意"
    BASICALLY_SATISFIED = "基本满意"
    DISSATISFIED = "不满意"
    VERY_DISSATISFIED = "非常不满意"


_BY_STARS: Final = {
    5: Satisfaction.VERY_SATISFIED,
    4: Satisfaction.SATISFIED,
    3: Satisfaction.BASICALLY_SATISFIED,
    2: Satisfaction.DISSATISFIED,
    1: Satisfaction.VERY_DISSATISFIED,
}
# Scores 10/8/6/3/0: provincial, but the sources agree (docs/devices/evaluation-pad.md).
_SCORE: Final = {5: 10, 4: 8, 3: 6, 2: 3, 1: 0}

PF_PAD: Final = 4
"""Channel code ``pf`` 4 = 政务大厅平板电脑 (the same in every source)."""


def check_stars(stars: int) -> int:
    """``stars`` if it is 1-5; ``ValueError`` otherwise."""
    if isinstance(stars, bool) or not isinstance(stars, int) or not 1 <= stars <= 5:
        raise ValueError(f"stars must be an integer 1-5, got {stars!r}")
    return stars


def satisfaction(stars: int) -> Satisfaction:
    """The level the citizen chose."""
    return _BY_STARS[check_stars(stars)]


def level_code(stars: int, coding: LevelCoding) -> int:
    """The 满意度代码 in ``coding``'s direction."""
    check_stars(stars)
    return 6 - stars if coding is LevelCoding.GBT39046 else stars


def score(stars: int) -> int:
    """The 10/8/6/3/0 score."""
    return _SCORE[check_stars(stars)]


def is_bad_review(stars: int) -> bool:
    """差评 = 不满意 or 非常不满意 (codes 4-5 under GB/T 39046, 1-2 under Zhejiang)."""
    return check_stars(stars) <= 2
