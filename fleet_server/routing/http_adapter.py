"""The generic HTTP JSON adapter: POST one transaction to a target, classify the answer.

Request: ``POST {url}`` with a JSON body (``tx_id``, ``tx_kind``, ``outlet_id``,
``created_ts``, ``item`` (the catalogue item, for submissions) and ``body``), headers
``Idempotency-Key: {outlet_id}:{tx_id}`` (``transactions.identity``: unique across the
province, the same on every retry), the target's own headers (e.g. ``Authorization``) and,
with a secret, ``{signature_header}: sha256=<hex HMAC-SHA256 of the exact body bytes>``.

Outcomes::

    Delivered   2xx, or 409 (the upstream already has this idempotency key)
                case_number from the JSON answer ("case_number", "caseNumber" or "projectNo")
    Permanent   any other 4xx but 408 and 429: the upstream refuses it; dead letter
    Transient   5xx, 408, 429, timeout, refused/reset connection: retry with backoff
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any, Final, Literal

import httpx

from fleet_server.routing.targets import TargetConfig

__all__ = ["DeliveryResult", "HttpJsonAdapter", "sign"]

_RETRYABLE_4XX: Final = {408, 425, 429}
_CASE_KEYS: Final = ("case_number", "caseNumber", "projectNo", "project_no")
_REASON_KEYS: Final = ("reason", "message", "detail", "error")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryResult:
    """What one attempt did; ``detail`` never holds request data (it may be PII)."""

    outcome: Literal["delivered", "permanent", "transient"]
    status_code: int | None = None
    case_number: str | None = None
    detail: str | None = None
    duration_ms: int = 0


def sign(secret: bytes, body: bytes) -> str:
    """The signature header value: ``sha256=`` + hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _answer(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _first(data: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = data.get(key)
        if isinstance(value, str | int) and str(value):
            return str(value)[:512]
    return None


class HttpJsonAdapter:
    """One target's HTTP client (connection pool); thread-safe; ``close()`` when done."""

    def __init__(self, target: TargetConfig) -> None:
        self.target = target
        self._secret = target.secret()
        self._client = httpx.Client(
            timeout=httpx.Timeout(target.timeout_s, connect=target.connect_timeout_s),
            headers=target.headers,
            follow_redirects=False,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def deliver(self, *, idempotency_key: str, document: dict[str, Any]) -> DeliveryResult:
        """POST ``document``; never raises for network or HTTP errors."""
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
        if self._secret is not None:
            headers[self.target.signature_header] = sign(self._secret, body)
        started = time.monotonic()
        try:
            response = self._client.post(str(self.target.url), content=body, headers=headers)
        except httpx.TimeoutException as exc:
            return DeliveryResult(
                outcome="transient", detail=f"timeout: {exc.__class__.__name__}",
                duration_ms=_ms(started),
            )  # fmt: skip
        except httpx.HTTPError as exc:
            return DeliveryResult(
                outcome="transient", detail=f"network: {exc.__class__.__name__}",
                duration_ms=_ms(started),
            )  # fmt: skip
        return _classify(response, duration_ms=_ms(started))


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _classify(response: httpx.Response, *, duration_ms: int) -> DeliveryResult:
    code = response.status_code
    data = _answer(response)
    if 200 <= code < 300 or code == httpx.codes.CONFLICT:
        return DeliveryResult(
            outcome="delivered",
            status_code=code,
            case_number=_first(data, _CASE_KEYS),
            detail="duplicate at upstream" if code == httpx.codes.CONFLICT else None,
            duration_ms=duration_ms,
        )
    reason = _first(data, _REASON_KEYS) or response.reason_phrase or f"HTTP {code}"
    if 400 <= code < 500 and code not in _RETRYABLE_4XX:
        return DeliveryResult(
            outcome="permanent", status_code=code, detail=reason, duration_ms=duration_ms
        )
    return DeliveryResult(
        outcome="transient", status_code=code, detail=reason, duration_ms=duration_ms
    )
