"""Webhook notifications with retries, sent by one named thread off the alert engine.

Each notification is POSTed to every destination (``alerts.robots``: the generic
webhook gets the payload as JSON, DingTalk and WeCom robots a markdown message). A
destination that fails (network error, a non-2xx answer, or a robot's non-zero
``errcode``) is retried with doubling backoff up to ``retries`` times; then the
notification is counted ``failed`` for it and dropped. Retries of one destination never
delay the others (each delivery is scheduled independently). Logs name a destination by
scheme and host only (``redact_url``): the rest may carry an ``access_token``, a ``key``
or a signature.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from fleet_server.alerts.robots import Destination, GenericWebhook

logger = logging.getLogger(__name__)


@dataclass(order=True, slots=True)
class _Job:
    due: float
    order: int
    destination: Destination = field(compare=False)
    payload: dict[str, Any] = field(compare=False)
    attempt: int = field(compare=False, default=0)


class WebhookNotifier:
    """``start()``, ``notify(payload)``, ``stop()``."""

    def __init__(
        self,
        urls: list[str],
        *,
        robots: Sequence[Destination] = (),
        retries: int = 5,
        backoff_s: float = 1.0,
        timeout_s: float = 5.0,
    ) -> None:
        self._destinations: list[Destination] = [GenericWebhook(url) for url in urls]
        self._destinations += robots
        self._retries = retries
        self._backoff_s = backoff_s
        self._jobs: list[_Job] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._client = httpx.Client(timeout=timeout_s)
        self._thread = threading.Thread(target=self._run, name="alert-webhooks", daemon=True)
        self.sent = 0
        self.failed = 0
        self.retried = 0

    def start(self) -> None:
        """Start the sender thread."""
        self._thread.start()

    def stop(self, *, timeout: float = 5.0) -> None:
        """Stop sending (pending retries are dropped) and close the HTTP client."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=timeout)
        self._client.close()

    @property
    def pending(self) -> int:
        """Deliveries waiting (first tries and retries)."""
        with self._cond:
            return len(self._jobs)

    def notify(self, payload: dict[str, Any]) -> None:
        """Queue ``payload`` for every destination."""
        now = time.monotonic()
        with self._cond:
            for destination in self._destinations:
                heapq.heappush(self._jobs, _Job(now, next(self._order), destination, payload))
            self._cond.notify()

    def _next(self) -> _Job | None:
        with self._cond:
            while not self._stopping:
                if self._jobs:
                    wait = self._jobs[0].due - time.monotonic()
                    if wait <= 0:
                        return heapq.heappop(self._jobs)
                    self._cond.wait(timeout=wait)
                else:
                    self._cond.wait(timeout=1.0)
            return None

    def _run(self) -> None:
        while (job := self._next()) is not None:
            try:
                url, body = job.destination.request(job.payload)
                response = self._client.post(url, json=body)
                ok = job.destination.accepted(response)
                why = f"HTTP {response.status_code}"
                if response.is_success:
                    why += ", refused in the answer"  # a robot's non-zero errcode
            except httpx.HTTPError as exc:
                ok, why = False, exc.__class__.__name__
            if ok:
                self.sent += 1
                continue
            if job.attempt >= self._retries:
                self.failed += 1
                # Never the URL itself: DingTalk and WeCom put their token in it.
                logger.warning("alert webhook %s failed %d times (%s); dropped",
                               job.destination.label, job.attempt + 1, why)  # fmt: skip
                continue
            self.retried += 1
            job.attempt += 1
            job.due = time.monotonic() + self._backoff_s * 2 ** (job.attempt - 1)
            with self._cond:
                heapq.heappush(self._jobs, job)
