"""Errors of the local API as the clerk app sees them: ``{error, message, hint}``.

``error`` is a stable code an app can switch on (``no_card``, ``paper_out``,
``device_unavailable``); ``message`` says what happened; ``hint`` tells the clerk what
to do. Errors from devices, the queue and the outbox are translated here, at the
boundary, so routes just call the runtime and let these handlers answer. No message
ever repeats a request's personal data (validation errors drop the offending input).

Exception tree::

    ApiError                (status, code, message, hint)

``state.LocalStateError`` (the API's own SQLite state) is answered 503 ``storage_error``;
a full disk, in either database, 507 ``outbox_full`` (nothing was accepted).
``edge_agent.idempotency`` errors are 409 ``idempotency_conflict`` or
``request_in_progress``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from edge_agent.devices import (
    DeviceBusy,
    DeviceError,
    DeviceRefused,
    DeviceTimeout,
    DeviceUnavailable,
    ProtocolError,
)
from edge_agent.idempotency import IdempotencyConflict, IdempotencyError
from edge_agent.local_api.routing import RequestInvalid
from edge_agent.local_api.state import LocalStateError, LocalStateFull
from edge_agent.outbox import (
    InvalidEntry,
    OutboxClosed,
    OutboxError,
    OutboxFull,
    StorageError,
    UnknownMaterial,
)
from edge_agent.queueing import (
    AppointmentExpired,
    AppointmentNotFound,
    AppointmentUsed,
    AppointmentWrongDay,
    NoCurrentTicket,
    QueueError,
    QueueStoreError,
    TicketNotFound,
    UnknownBusinessType,
    UnknownWindow,
    WindowPaused,
)
from govedge_wire.pii import field_path

__all__ = ["ApiError", "error_body", "error_responses", "install_error_handlers"]

log = logging.getLogger(__name__)
TOO_LARGE_HINT: Final = "send fewer or smaller materials (scan at a lower resolution)"

_RETRY: Final = "try again; if it keeps failing, call the technician"


class ApiError(Exception):
    """An error answer: HTTP ``status``, stable ``code``, ``message`` and ``hint``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        hint: str = "",
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.hint = hint
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})


def error_body(code: str, message: str, hint: str = "", **extra: Any) -> dict[str, Any]:
    """The JSON body of every error answer."""
    return {"error": code, "message": message, "hint": hint, **extra}


def _answer(exc: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.code, exc.message, exc.hint, **exc.extra),
        status_code=exc.status,
        headers=exc.headers or None,
    )


# ---- translation ---------------------------------------------------------------------


def from_device_error(exc: DeviceError) -> ApiError:
    """A driver's error as an answer; ``DeviceRefused`` keeps the driver's code and hint."""
    device = {"device_id": exc.device_id} if exc.device_id else {}
    if isinstance(exc, DeviceRefused):
        return ApiError(409, exc.code, str(exc), hint=exc.hint, extra=device)
    if isinstance(exc, DeviceUnavailable):
        return ApiError(
            503,
            "device_unavailable",
            f"the device is unplugged or cannot be opened: {exc}",
            hint="plug the device back in (it is ready again within seconds) and try again",
            extra=device,
        )
    if isinstance(exc, DeviceTimeout):
        return ApiError(
            504,
            "device_timeout",
            str(exc),
            hint="check the device's cable and power, then try again",
            extra=device,
        )
    if isinstance(exc, DeviceBusy):
        return ApiError(
            409,
            "device_busy",
            str(exc),
            hint="another request is using the device; wait a moment and try again",
            extra=device,
        )
    if isinstance(exc, ProtocolError):
        return ApiError(502, "device_protocol_error", str(exc), hint=_RETRY, extra=device)
    return ApiError(502, exc.reason or "device_error", str(exc), hint=_RETRY, extra=device)


def from_queue_error(exc: QueueError) -> ApiError:
    """A queue engine error as an answer."""
    table: list[tuple[type[QueueError], int, str, str]] = [
        (
            UnknownBusinessType,
            404,
            "unknown_business_type",
            "pick a business type of GET /v1/queue",
        ),
        (UnknownWindow, 404, "unknown_window", "check the window number (GET /v1/queue)"),
        (WindowPaused, 409, "window_paused", "resume the window first"),
        (NoCurrentTicket, 409, "no_current_ticket", "call a ticket first"),
        (TicketNotFound, 404, "ticket_not_found", "only held or skipped tickets of today"),
        (QueueStoreError, 503, "queue_storage_error", _RETRY),
        (
            AppointmentNotFound,
            404,
            "appointment_not_found",
            "check the booking code on the citizen's phone, or take a normal ticket",
        ),
        (
            AppointmentWrongDay,
            409,
            "appointment_wrong_day",
            "the booking is for another day; take a normal ticket or book again",
        ),
        (
            AppointmentExpired,
            409,
            "appointment_expired",
            "the booked time slot is over; take a normal ticket or book again",
        ),
        (
            AppointmentUsed,
            409,
            "appointment_used",
            "this booking already has its ticket; ask the staff if it was lost",
        ),
    ]
    for cls, status, code, hint in table:
        if isinstance(exc, cls):
            return ApiError(status, code, str(exc), hint=hint)
    return ApiError(409, "queue_error", str(exc), hint="see the message")


_OFFLINE: Final = (
    "the outlet has been offline too long; call the technician. Nothing already accepted is lost."
)
_DISK_FULL: Final = (
    "the agent's disk is full; call the technician to free space. Nothing already accepted is lost."
)


def from_outbox_error(exc: OutboxError) -> ApiError:
    """An outbox error as an answer; ``OutboxFull`` is 507 with the outbox's own sentence."""
    if isinstance(exc, OutboxFull):
        return ApiError(507, "outbox_full", str(exc), hint=_DISK_FULL if exc.disk else _OFFLINE)
    if isinstance(exc, InvalidEntry | UnknownMaterial):
        return ApiError(422, "invalid_transaction", str(exc), hint="fix the request")
    if isinstance(exc, StorageError | OutboxClosed):
        return ApiError(
            503,
            "storage_error",
            str(exc),
            hint="try again with the same Idempotency-Key; it is never stored twice",
        )
    return ApiError(500, "outbox_error", str(exc), hint=_RETRY)


def from_idempotency_error(exc: IdempotencyError) -> ApiError:
    """409: the key was used with another request, or its request is still running."""
    if isinstance(exc, IdempotencyConflict):
        hint = (
            "use a new Idempotency-Key for a new case; resend a request only unchanged "
            "under its key"
        )
        return ApiError(409, "idempotency_conflict", str(exc), hint=hint)
    hint = "wait for the first request's answer, then retry with the same key"
    return ApiError(409, "request_in_progress", str(exc), hint=hint)


# ---- handlers ------------------------------------------------------------------------


def _clean_validation(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Validation details without the rejected input (it may be an ID number), and
    without a key of the caller's that is not shaped like a field name (``field_path``)."""
    return [
        {"loc": field_path(err.get("loc", ())), "msg": str(err.get("msg", ""))}
        for err in errors
        if isinstance(err, dict)
    ]


def install_error_handlers(app: Starlette) -> None:
    """Answer every error of the app in the ``{error, message, hint}`` shape."""

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return _answer(exc)

    async def on_device_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DeviceError)
        log.info("local API %s: device error %s", request.url.path, exc.reason)
        return _answer(from_device_error(exc))

    async def on_queue_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, QueueError)
        return _answer(from_queue_error(exc))

    async def on_outbox_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, OutboxError)
        log.warning("local API %s: outbox error %s", request.url.path, type(exc).__name__)
        return _answer(from_outbox_error(exc))

    async def on_idempotency_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, IdempotencyError)
        return _answer(from_idempotency_error(exc))

    async def on_state_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, LocalStateError)
        log.warning("local API %s: state database error", request.url.path)
        if isinstance(exc, LocalStateFull):  # the write was rolled back: nothing accepted
            return _answer(
                ApiError(
                    507,
                    "outbox_full",
                    "outbox full: nothing accepted was lost (disk full)",
                    hint=_DISK_FULL,
                )
            )
        return _answer(
            ApiError(
                503,
                "storage_error",
                "the agent could not read or write its local state",
                hint="try again with the same Idempotency-Key; it is never stored twice",
            )
        )

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestInvalid)
        local = getattr(request.app.state, "local", None)
        if local is not None:  # the local API's context (not in a bare test app)
            local.refused("invalid_request")
        details = _clean_validation(exc.errors())
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        hint = "fix the field named in the message and send again"
        media = request.headers.get("content-type", "")
        if first["loc"][:1] == ["body"] and "json" not in media.lower():
            # curl -d and a bare fetch() send a form or text/plain: the JSON in it is
            # never read, and the message alone ("a valid dictionary") hides why.
            hint = (
                "send the body as JSON with 'Content-Type: application/json' (this "
                f"request's: {media.split(';')[0].strip()[:64] or 'none'})"
            )
        return JSONResponse(
            error_body(
                "invalid_request",
                f"{'.'.join(first['loc'][1:]) or 'request'}: {first['msg']}",
                hint,
                details=details,
            ),
            status_code=422,
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 413:  # a streamed body grew past the limit (security.py)
            return JSONResponse(
                error_body("request_too_large", str(exc.detail), TOO_LARGE_HINT),
                status_code=413,
            )
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail), "check the URL and method against /openapi.json"),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(DeviceError, on_device_error)
    app.add_exception_handler(QueueError, on_queue_error)
    app.add_exception_handler(OutboxError, on_outbox_error)
    app.add_exception_handler(LocalStateError, on_state_error)
    app.add_exception_handler(IdempotencyError, on_idempotency_error)
    app.add_exception_handler(RequestInvalid, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


# ---- OpenAPI documentation of errors -------------------------------------------------

_EXAMPLES: Final[dict[int, tuple[str, str, str, str]]] = {
    401: (
        "unauthorized",
        "Authentication",
        "a valid 'Authorization: Bearer TOKEN' is required",
        "register the app with 'edge-agent apps add' and send its token",
    ),
    403: (
        "origin_not_allowed",
        "Origin",
        "origin https://other.example is not allowed",
        "add the origin with 'edge-agent apps add NAME --origin ...'",
    ),
    404: ("not_found", "Not found", "no such resource", "check the id"),
    409: ("no_card", "Device refused", "reader: no card found", "place the ID card on the reader"),
    422: (
        "invalid_request",
        "Invalid request",
        "applicant.id_number: check digit is wrong",
        "fix the field named in the message and send again",
    ),
    502: ("device_protocol_error", "Device garbled", "bad checksum from the reader", _RETRY),
    503: (
        "device_unavailable",
        "No device",
        "no ID-card reader is connected",
        "plug the ID-card reader in; it is ready within seconds",
    ),
    504: (
        "device_timeout",
        "Device silent",
        "reader did not answer within 3 s",
        "check the device's cable and power, then try again",
    ),
    507: (
        "outbox_full",
        "Outbox full",
        "outbox full: 812 transactions waiting for the network; nothing accepted was lost",
        "the outlet has been offline too long; call the technician",
    ),
}


def error_responses(
    *statuses: int, examples: Mapping[int, Mapping[str, tuple[str, str, str]]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries with an example error body for each status.

    ``examples`` replaces a status's generic example with named ones: ``{409:
    {"idempotency_conflict": (code, message, hint), ...}}``.
    """
    out: dict[int | str, dict[str, Any]] = {}
    for status in (401, 403, *statuses):
        code, title, message, hint = _EXAMPLES[status]
        named = (examples or {}).get(status)
        content: dict[str, Any] = (
            {"example": error_body(code, message, hint)}
            if not named
            else {
                "examples": {
                    name: {"value": error_body(*example)} for name, example in named.items()
                }
            }
        )
        out[status] = {"description": title, "content": {"application/json": content}}
    return out


IDEMPOTENCY_CONFLICT: Final = (
    "idempotency_conflict",
    "Idempotency-Key eval-case-0001-try was already used with a different body",
    "use a new Idempotency-Key for a new case; resend a request only unchanged under its key",
)
