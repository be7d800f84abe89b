"""The upstream platform for chaos tests: ``govedge_testbed.upstream.Upstream`` plus one mode.

``late`` is the nastiest hang: the upstream *processes* the request (records the case)
and then answers only after the client gave up, so the server's retry meets a known
idempotency key and must take the ``409`` as delivered. ``posts`` counts every request
per key and ``answered_ok`` every 2xx/409 answer, so a test can report how often the
server had to send a case again.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from govedge_testbed.upstream import Upstream


@dataclass
class ChaosUpstream(Upstream):
    answered_ok: Counter[str] = field(default_factory=Counter)
    first_seen: dict[str, float] = field(default_factory=dict)

    def set_mode(self, mode: str, *, hang_s: float = 2.0) -> None:
        """Switch every target (``ok``, ``error``, ``hang``, ``late``) except rejecting ones."""
        with self.lock:
            for state in self.targets.values():
                if state.mode != "reject":
                    state.mode, state.hang_s = mode, hang_s

    def snapshot(self) -> tuple[int, int]:
        """(keys accepted, requests received): changes while anything is still arriving."""
        with self.lock:
            return len(self.accepted), sum(self.received.values())

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        name = handler.path.rsplit("/", 1)[-1]
        state = self.target(name)
        key = handler.headers.get("Idempotency-Key", "")
        with self.lock:
            mode = state.mode
            self.first_seen.setdefault(key, time.monotonic())
        if mode != "late":
            super().handle(handler)
            if mode == "ok":
                with self.lock:
                    self.answered_ok[key] += 1
            return
        body = self.read_body(handler)
        if body is None:  # the fleet server was killed mid-request: nothing to answer
            return
        with self.lock:
            state.requests += 1
            self.received[key] += 1
            self.answered_ok[key] += 1
            if key not in self.accepted:
                case = f"CASE-{len(self.accepted) + 1:06d}"
                self.accepted[key] = {"case_number": case, "body": json.loads(body), "target": name}
                self.accepted_count[key] += 1
                self.by_target.setdefault(name, []).append(key)
        time.sleep(state.hang_s)  # processed, but the answer comes after the client's timeout
        self._answer(handler, 200, {"case_number": self.accepted[key]["case_number"]})
