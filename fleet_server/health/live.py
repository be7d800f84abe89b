"""A change counter the ingest and the alert engine bump; SSE streams wait on it."""

from __future__ import annotations

import threading


class LiveHub:
    """``bump()`` from any thread; ``wait_past(version, timeout)`` returns the new version."""

    def __init__(self) -> None:
        self._version = 0
        self._cond = threading.Condition()

    @property
    def version(self) -> int:
        """The current change number."""
        with self._cond:
            return self._version

    def bump(self) -> None:
        """Something operators see has changed."""
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    def wait_past(self, version: int, *, timeout: float) -> int:
        """Block until the version differs from ``version`` or ``timeout`` passes."""
        with self._cond:
            self._cond.wait_for(lambda: self._version != version, timeout=timeout)
            return self._version
