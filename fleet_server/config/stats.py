"""Counters of config publishing and reports, read by ``/metrics`` at scrape time.

Written by the reconciler thread and the ingest worker thread; each update is one
``Counter`` operation under a lock, so a scrape never sees a half-made change.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ConfigStatsSnapshot:
    """A consistent copy of the counters."""

    signing_key: bool
    published: int
    republished: int
    signed: int
    refused_by_server: dict[str, int]
    refused_by_agents: dict[str, int]
    dropped: dict[str, int]
    held: int
    drifting: int
    passes: int
    pass_errors: int


@dataclass(slots=True)
class ConfigStats:
    """What the config parts of one process did since start."""

    signing_key: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counts: Counter[str] = field(default_factory=Counter)
    _server_refused: Counter[str] = field(default_factory=Counter)
    _agent_refused: Counter[str] = field(default_factory=Counter)
    _dropped: Counter[str] = field(default_factory=Counter)
    _held: int = 0
    _drifting: int = 0

    def count(self, name: str, n: int = 1) -> None:
        """``published``, ``republished``, ``signed``, ``passes``, ``pass_errors``."""
        with self._lock:
            self._counts[name] += n

    def refused_by_server(self, reason: str) -> None:
        """An effective config the server would not sign (``invalid``, ``oversize``)."""
        with self._lock:
            self._server_refused[reason] += 1

    def refused_by_agent(self, reason: str) -> None:
        """An agent reported a refusal with ``reason``."""
        with self._lock:
            self._agent_refused[reason] += 1

    def dropped(self, reason: str, n: int = 1) -> None:
        """Births or reports whose effect could not be stored."""
        with self._lock:
            self._dropped[reason] += n

    def gauges(self, *, held: int, drifting: int) -> None:
        """Outlets with a held config, and outlets out of sync, as of the last pass."""
        with self._lock:
            self._held = held
            self._drifting = drifting

    def snapshot(self) -> ConfigStatsSnapshot:
        """A copy for ``/metrics``."""
        with self._lock:
            return ConfigStatsSnapshot(
                signing_key=self.signing_key,
                published=self._counts["published"],
                republished=self._counts["republished"],
                signed=self._counts["signed"],
                refused_by_server=dict(self._server_refused),
                refused_by_agents=dict(self._agent_refused),
                dropped=dict(self._dropped),
                held=self._held,
                drifting=self._drifting,
                passes=self._counts["passes"],
                pass_errors=self._counts["pass_errors"],
            )
