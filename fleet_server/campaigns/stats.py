"""Campaign counters for ``/metrics``: offers sent, reports ignored by reason, pauses."""

from __future__ import annotations

import threading
from collections import Counter


class CampaignStats:
    """Thread-safe counters, read by the metrics page."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._ignored: Counter[str] = Counter()
        self._by_state: dict[str, int] = {}

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name`` (offers_sent, reports, timeouts, auto_pauses…)."""
        if n:
            with self._lock:
                self._counts[name] += n

    def ignored(self, reason: str) -> None:
        """An update report counted and ignored, by reason."""
        with self._lock:
            self._ignored[reason] += 1

    def campaigns(self, by_state: dict[str, int]) -> None:
        """Campaigns per state, as the engine last counted them."""
        with self._lock:
            self._by_state = dict(by_state)

    def snapshot(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        """(counters, ignored reports by reason, campaigns by state)."""
        with self._lock:
            return dict(self._counts), dict(self._ignored), dict(self._by_state)
