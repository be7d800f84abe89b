"""The generic HTTP adapter: POST one transaction to a target, classify the answer.

The request (JSON, or multipart with the materials streamed chunk by chunk), its
idempotency key and signature, and how answers map to ``Delivered``/``Permanent``/
``Transient``: docs/transactions.md, "Routing".
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import httpx

from fleet_server.routing.targets import TargetConfig

__all__ = [
    "Attachment",
    "AttachmentError",
    "DeliveryResult",
    "HttpJsonAdapter",
    "multipart_body",
    "sign",
]

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


class AttachmentError(ValueError):
    """An attachment yielded another number of bytes than its ``size``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    """A material sent as its own part: ``chunks()`` yields its bytes, ``size`` in all.

    ``chunks`` may raise part way (the stored material turned out corrupt): the request
    is then abandoned, so the receiver never gets a complete body.
    """

    ref: str
    size: int
    chunks: Callable[[], Iterator[bytes]]


def multipart_body(
    document: bytes, attachments: Sequence[Attachment], *, boundary: str
) -> tuple[int, Iterator[bytes]]:
    """(Content-Length, body iterator) of the ``multipart/form-data`` request."""
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="document"\r\n'
        "Content-Type: application/json\r\n\r\n"
    ).encode()
    heads = [
        (
            f"\r\n--{boundary}\r\n"
            f'Content-Disposition: form-data; name="material"; filename="{item.ref}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        for item in attachments
    ]
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + len(document) + len(tail)
    length += sum(len(part) + item.size for part, item in zip(heads, attachments, strict=True))

    def parts() -> Iterator[bytes]:
        yield head + document
        for part, item in zip(heads, attachments, strict=True):
            yield part
            sent = 0
            for chunk in item.chunks():
                sent += len(chunk)
                if sent > item.size:
                    raise AttachmentError("a material yielded more bytes than its size")
                yield chunk
            if sent != item.size:
                raise AttachmentError("a material yielded fewer bytes than its size")
        yield tail

    return length, parts()


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

    def deliver(
        self,
        *,
        idempotency_key: str,
        document: dict[str, Any],
        attachments: Sequence[Attachment] = (),
    ) -> DeliveryResult:
        """POST ``document`` (and stream ``attachments``); never raises for network or
        HTTP errors. An attachment's own failure (its ``chunks()`` raising) propagates."""
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Idempotency-Key": idempotency_key}
        if self._secret is not None:
            headers[self.target.signature_header] = sign(self._secret, body)
        content: bytes | Iterator[bytes] = body
        if attachments:
            boundary = f"govedge-{uuid.uuid4().hex}"
            length, content = multipart_body(body, attachments, boundary=boundary)
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
            headers["Content-Length"] = str(length)
        else:
            headers["Content-Type"] = "application/json"
        started = time.monotonic()
        try:
            response = self._client.post(str(self.target.url), content=content, headers=headers)
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
