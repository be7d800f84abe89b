"""A database read behind ``/metrics``, made at most every ``ttl_s`` seconds.

A scrape every 15 s (or several Prometheus/VictoriaMetrics scraping) must not read the
fleet's records each time; while the database fails, the last answer is served and the
failure logged at most once a minute (``RateLimitedLog``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.ingest.stats import RateLimitedLog

T = TypeVar("T")


class ScrapeCache(Generic[T]):
    """``read`` on a fresh session, its answer kept for ``ttl_s``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        read: Callable[[Session], T],
        empty: T,
        *,
        key: str,
        what: str,
        log: RateLimitedLog,
        ttl_s: float = 30.0,
    ) -> None:
        self._sessions = sessions
        self._read = read
        self._value = empty
        self._at = -1e9
        self._key, self._what, self._log, self._ttl_s = key, what, log, ttl_s

    def __call__(self) -> T:
        now = time.monotonic()
        if now - self._at < self._ttl_s:
            return self._value
        try:
            with self._sessions() as session:
                value = self._read(session)
        except SQLAlchemyError as exc:
            self._log.exception(self._key, f"could not read {self._what} for /metrics", exc=exc)
            return self._value
        self._at, self._value = now, value
        return value
