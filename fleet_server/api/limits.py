"""Limits checked before a request body is read: its size, and how often an address may
call the endpoints that take no operator token.

``RequestLimits`` is a pure ASGI middleware in front of the whole app:

- **Size.** Each route has a byte limit (``BODY_LIMITS`` by path, else the default;
  ``create_app`` adds ``/api/v1/releases`` with its own setting). A
  ``Content-Length`` above it is answered 413 at once, before any byte of the body is
  read. A body without one (``Transfer-Encoding: chunked``) is counted as it streams
  and cut off with 413 past the limit (``govedge_http.run_counted``).
- **Rate.** ``/ui/login``, ``/api/v1/enroll`` and ``/api/v1/enroll/renew`` take a token
  bucket per client address (``rate_per_min`` refilled, ``burst`` at once); past it the
  answer is 429 with ``Retry-After``. Behind a reverse proxy the address is the one
  uvicorn takes from ``X-Forwarded-For`` of a trusted proxy (``--forwarded-allow-ips``).

Refusals are counted by reason (``counts``: ``too_large``, ``rate_limited``) and exported
as ``govedge_http_refused`` in ``/metrics``.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from typing import Final

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from govedge_http import BodyTooLarge, run_counted

__all__ = ["BODY_LIMITS", "OPEN_PATHS", "RequestLimits"]

KIB: Final = 1024
MIB: Final = 1024 * KIB
# Routes whose bodies may be larger or must be smaller than the default.
BODY_LIMITS: Final[Mapping[str, int]] = {
    "/ui/login": 4 * KIB,  # a user name and a password
    "/api/v1/enroll": 16 * KIB,  # a token and a CSR
    "/api/v1/enroll/renew": 32 * KIB,  # a certificate, a CSR and a signature
    "/api/v1/catalogue/import": 32 * MIB,  # a province's service-item list
    "/api/v1/regions": 16 * MIB,  # outlines of every region
    "/api/v1/regions/import": 16 * MIB,  # the same as GeoJSON
    "/api/v1/outlet-profiles": 8 * MIB,  # thousands of outlets at once
    "/api/v1/outlets/import": 16 * MIB,  # a province's outlet registry
}
# Endpoints anyone may call (no operator token): rate-limited per client address.
OPEN_PATHS: Final = frozenset({"/ui/login", "/api/v1/enroll", "/api/v1/enroll/renew"})
_BODYLESS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_MAX_ADDRESSES: Final = 10_000  # buckets kept; the least recently used go first


class _Buckets:
    """Token buckets per client address (thread-safe; the oldest are forgotten)."""

    def __init__(self, *, rate_per_min: float, burst: int, clock: Callable[[], float]) -> None:
        self._rate = rate_per_min / 60.0
        self._burst = float(burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, address: str) -> float:
        """0 if ``address`` may call now (one token taken), else seconds until it may."""
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.pop(address, (self._burst, now))
            tokens = min(self._burst, tokens + (now - at) * self._rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self._rate
            self._buckets[address] = (tokens - 1 if wait == 0 else tokens, now)
            while len(self._buckets) > _MAX_ADDRESSES:
                self._buckets.popitem(last=False)
        return wait


class RequestLimits:
    """The middleware described in the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        default_max_bytes: int,
        rate_per_min: float,
        burst: int,
        limits: Mapping[str, int] = BODY_LIMITS,
        open_paths: frozenset[str] = OPEN_PATHS,
        counts: Counter[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.default_max_bytes = default_max_bytes
        self.limits = limits
        self.open_paths = open_paths
        self.buckets = _Buckets(rate_per_min=rate_per_min, burst=burst, clock=clock)
        self.counts: Counter[str] = Counter() if counts is None else counts

    def limit_for(self, path: str) -> int:
        """The largest body ``path`` takes."""
        return self.limits.get(path.rstrip("/") or "/", self.default_max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse, or pass the request on with a receive that counts its body."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", "")).rstrip("/") or "/"
        method = str(scope.get("method", "GET"))
        if path in self.open_paths and method not in _BODYLESS:
            client = scope.get("client")
            wait = self.buckets.take(str(client[0]) if client else "?")
            if wait > 0:
                self.counts["rate_limited"] += 1
                retry = str(max(1, math.ceil(wait)))
                await _answer(send, 429, "too many requests from this address; retry later",
                              [(b"retry-after", retry.encode())])  # fmt: skip
                return
        limit = self.limit_for(path)
        length = Headers(scope=scope).get("content-length")
        if length is not None and not length.isdigit():
            await _answer(send, 400, "Content-Length is not a number")
            return
        if length is not None and int(length) > limit:
            self.counts["too_large"] += 1
            await _answer(send, 413, f"the request body is over {limit} bytes")
            return

        def exceeded() -> None:
            self.counts["too_large"] += 1

        async def answer(send: Send, exc: BodyTooLarge) -> None:
            await _answer(send, 413, str(exc.detail))

        await run_counted(
            self.app, scope, receive, send, limit=limit, exceeded=exceeded, answer=answer
        )


async def _answer(
    send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
