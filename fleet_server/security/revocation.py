"""Which outlets are revoked right now, for the ingest: an in-memory set, refreshed.

An outlet is revoked while one of its certificates was revoked and none is valid; the
ingest judges by outlet because the broker tells it the topic, not the certificate
(docs/security.md, "Revocation without a broker restart").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from fleet_server.models import Certificate

__all__ = ["RevokedOutlets", "revoked_outlet_ids"]


def revoked_outlet_ids(session: Session, *, now: datetime | None = None) -> set[str]:
    """Outlets with a revoked certificate and no valid one, in one grouped query."""
    now = now or datetime.now(UTC)
    valid = case((and_(Certificate.revoked_at.is_(None), Certificate.not_after > now), 1), else_=0)
    rows = session.execute(
        select(Certificate.outlet_id)
        .group_by(Certificate.outlet_id)
        .having(func.count(Certificate.revoked_at) > 0, func.sum(valid) == 0)
    ).scalars()
    return set(rows)


class RevokedOutlets:
    """The revoked outlet ids; ``contains`` is a set lookup, safe from any thread."""

    def __init__(self, *, refresh_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._refresh_s = refresh_s
        self._clock = clock
        self._ids: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._next = 0.0
        # add/discard since a refresh began win over what that refresh read.
        self._changed: dict[str, tuple[bool, float]] = {}
        self.loaded = False

    def contains(self, outlet_id: str) -> bool:
        """True while ``outlet_id`` is revoked (as of the last refresh or ``add``)."""
        return outlet_id in self._ids

    @property
    def ids(self) -> frozenset[str]:
        """The revoked outlet ids right now."""
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def replace(self, ids: Iterable[str], *, read_since: float | None = None) -> None:
        """Take a freshly read set; changes made after ``read_since`` are kept."""
        fresh = set(ids)
        with self._lock:
            if read_since is not None:
                for outlet_id, (revoked, at) in list(self._changed.items()):
                    if at < read_since:
                        del self._changed[outlet_id]
                    elif revoked:
                        fresh.add(outlet_id)
                    else:
                        fresh.discard(outlet_id)
            self._ids = frozenset(fresh)
            self.loaded = True

    def add(self, outlet_id: str) -> None:
        """This process just revoked ``outlet_id``."""
        with self._lock:
            self._changed[outlet_id] = (True, self._clock())
            self._ids = self._ids | {outlet_id}

    def discard(self, outlet_id: str) -> None:
        """This process just issued ``outlet_id`` a new certificate."""
        with self._lock:
            self._changed[outlet_id] = (False, self._clock())
            self._ids = self._ids - {outlet_id}

    def due(self) -> bool:
        """True when the next refresh is due."""
        return self._clock() >= self._next

    def refresh(self, session: Session) -> None:
        """Read the set again (raises what the query raises; the old set stays)."""
        started = self._clock()
        self._next = started + self._refresh_s
        self.replace(revoked_outlet_ids(session), read_since=started)
