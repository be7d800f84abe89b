"""Reconnect delays: capped exponential backoff with full jitter.

``delay = uniform(0, min(cap, base * 2**attempt))`` (AWS "full jitter"). After a broker
restart every outlet of a province reconnects; full jitter spreads them over the whole
window instead of in synchronized waves. The caller resets ``attempt`` to 0 after a
connection that stayed up for at least one keep-alive.
"""

from __future__ import annotations

import random
from typing import Final

# 2**64 seconds is far past any cap; clamping keeps the float math from overflowing.
_MAX_EXPONENT: Final = 64


def backoff_ceiling(attempt: int, *, base: float, cap: float) -> float:
    """The upper bound of the delay before retry number ``attempt`` (0-based)."""
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    return min(cap, base * 2.0 ** min(attempt, _MAX_EXPONENT))


def full_jitter_delay(attempt: int, *, base: float, cap: float) -> float:
    """A random delay in ``[0, min(cap, base * 2**attempt)]``."""
    return random.uniform(0.0, backoff_ceiling(attempt, base=base, cap=cap))


def jittered(interval: float, *, spread: float = 0.1) -> float:
    """``interval`` moved by up to ``±spread`` (a fraction), for periodic timers."""
    return interval * random.uniform(1.0 - spread, 1.0 + spread)
