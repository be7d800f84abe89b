"""In-process counters and a per-key log limiter (bad input is counted, logged rarely)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import Final

# Why the local API refused a request (local_api/security.py, and 422 invalid_request).
LOCAL_API_REFUSALS: Final = (
    "bad_host", "registry", "missing_token", "bad_token", "bad_origin", "role",
    "too_large", "preflight_origin", "invalid_request",
)  # fmt: skip
# Counters every telemetry message reports (0 until they happen), so the fleet sees them.
TELEMETRY_COUNTERS: Final = (
    "cert_renewals",
    "cert_renewal_failures",
    "cert_renewals_refused",
    "config_applied",
    # announcements the agent played itself (edge_agent/queueing/playback.py)
    "voice_played", "voice_failed", "voice_dropped",
    *(
        f"config_refused_{reason}"
        for reason in (
            "oversize", "garbage", "unknown_key", "bad_signature", "hash_mismatch",
            "other_outlet", "replayed", "schema", "invalid_here", "apply_failed",
        )
    ),
    *(f"local_api_refused_{reason}" for reason in LOCAL_API_REFUSALS),
    # a body the technician socket could not take (technician/socket_api.py)
    "technician_refused_invalid_request",
)  # fmt: skip


class AgentCounters:
    """Named counters that live as long as the process; a later issue reports them."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def incr(self, name: str, amount: int = 1) -> int:
        """Add ``amount`` to counter ``name`` and return its new value."""
        self._counts[name] += amount
        return self._counts[name]

    def get(self, name: str) -> int:
        """The value of counter ``name`` (0 if never counted)."""
        return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        """A copy of all counters."""
        return dict(self._counts)

    def subset(self, names: Iterable[str] = TELEMETRY_COUNTERS) -> dict[str, int]:
        """The named counters (0 for those never counted), e.g. for telemetry."""
        return {name: self._counts[name] for name in names}


class LogLimiter:
    """Allow one log line per key per ``period_s`` seconds."""

    def __init__(self, period_s: float = 60.0) -> None:
        self.period_s = period_s
        self._last: dict[str, float] = {}

    def allow(self, key: str) -> bool:
        """True if ``key`` was not logged within the period (and mark it logged now)."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.period_s:
            return False
        self._last[key] = now
        return True
