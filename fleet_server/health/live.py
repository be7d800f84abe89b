"""A change counter the ingest and the alert engine bump; SSE streams wait on it."""

from __future__ import annotations

import secrets
import threading


class LiveHub:
    """``bump()`` from any thread; ``wait_past(version, timeout)`` returns the new version.

    A change made in this process (``bump``) is also marked for the other server
    processes of the database (``LiveShare`` writes it there); one they made is brought
    in by ``bump_from_peer``, which marks nothing.
    """

    def __init__(self) -> None:
        # Which process's numbers these are: a page that reconnects to another server
        # process must not take the same number there for "nothing changed".
        self.hub_id = secrets.token_hex(4)
        self._version = 0
        self._local_change = False
        self._cond = threading.Condition()

    @property
    def version(self) -> int:
        """The current change number."""
        with self._cond:
            return self._version

    def bump(self) -> None:
        """Something operators see has changed, here."""
        with self._cond:
            self._version += 1
            self._local_change = True
            self._cond.notify_all()

    def bump_from_peer(self) -> None:
        """Another server process changed something operators see."""
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    def take_local_change(self) -> bool:
        """True once after one or more ``bump`` calls (the change still to be shared)."""
        with self._cond:
            changed, self._local_change = self._local_change, False
            return changed

    def wait_past(self, version: int, *, timeout: float) -> int:
        """Block until the version differs from ``version`` or ``timeout`` passes."""
        with self._cond:
            self._cond.wait_for(lambda: self._version != version, timeout=timeout)
            return self._version
