"""The local API's gate: loopback Host, per-app token, per-app Origin, strict CORS.

A pure ASGI middleware in front of every HTTP request and WebSocket, in this order:

1. **Host** must be ``127.0.0.1``, ``localhost`` or ``[::1]`` (any port). A page on
   ``evil.example`` whose DNS later points at 127.0.0.1 (DNS rebinding) sends
   ``Host: evil.example`` and is refused before anything else.
2. **CORS preflight** (``OPTIONS`` with ``Access-Control-Request-Method``; browsers send
   no credentials on it) is answered only for an origin some registered app allows,
   including Chromium's Private Network Access question
   (``Access-Control-Request-Private-Network: true`` → ``…-Allow-Private-Network: true``).
3. **Token**: ``Authorization: Bearer TOKEN``; for a WebSocket, where browsers cannot
   set headers, the subprotocol ``bearer.TOKEN`` next to ``govedge.v1`` (a header, so
   it never lands in URLs, browser history or access logs, as a query parameter would).
4. **Origin**: when the request carries one (browsers always send it cross-origin and
   on WebSockets), it must be in that app's allow-list. A foreign page therefore gets
   403 and no ``Access-Control-Allow-*`` header, so it can read nothing.

5. **Role**: a hall display or kiosk app may call only its few routes
   (``roles.py``); anything else is 403 ``role_not_allowed``.

6. **Size**: a ``Content-Length`` over ``max_body_bytes`` is refused (413) before the
   body is read; a chunked body is counted as it streams and cut off with 413 (and
   ``Connection: close``) as soon as it crosses the limit.

Between 1. and 2., ``GET``/``HEAD`` of the public files (the JS client, ``client_files``,
the counter console's page, ``console_page``, and the hall pages, ``hall_pages``) pass:
they are code, not data.

Rejections are counted by reason (``refused``; ``local_api_refused_*`` in telemetry)
and logged without the token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any, Final

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge_agent.local_api.apps import AppRegistry, AppRegistryError
from edge_agent.local_api.client_files import CLIENT_PATHS
from edge_agent.local_api.console_page import CONSOLE_PATHS
from edge_agent.local_api.errors import TOO_LARGE_HINT, error_body
from edge_agent.local_api.hall_pages import HALL_PATHS
from edge_agent.local_api.roles import allows
from govedge_http import BodyTooLarge, run_counted

__all__ = ["LOOPBACK_HOSTS", "WS_SUBPROTOCOL", "LocalGuard", "host_is_loopback"]

log = logging.getLogger(__name__)

LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "[::1]"})
WS_SUBPROTOCOL: Final = "govedge.v1"
WS_TOKEN_PREFIX: Final = "bearer."  # noqa: S105 - the subprotocol prefix, not a secret
_ALLOW_HEADERS: Final = "Authorization, Content-Type, Idempotency-Key, Accept"
_ALLOW_METHODS: Final = "GET, POST, OPTIONS"
_EXPOSE_HEADERS: Final = "X-Document-Id, X-Tx-Id"
_PREFLIGHT_MAX_AGE: Final = "600"
PUBLIC_PATHS: Final = CLIENT_PATHS | HALL_PATHS | CONSOLE_PATHS


def host_is_loopback(host_header: str) -> bool:
    """True for ``127.0.0.1[:port]``, ``localhost[:port]`` and ``[::1][:port]``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        name = host[: host.find("]") + 1] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0] if ":" in host else host
    return name in LOOPBACK_HOSTS


def _ws_token(protocols: Iterable[str]) -> str | None:
    for protocol in protocols:
        if protocol.startswith(WS_TOKEN_PREFIX):
            return protocol[len(WS_TOKEN_PREFIX) :]
    return None


class LocalGuard:
    """ASGI middleware enforcing the rules in the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        registry: AppRegistry,
        max_body_bytes: int,
        refused: Callable[[str], None],
    ) -> None:
        self.app = app
        self.registry = registry
        self.max_body_bytes = max_body_bytes
        self.refused = refused  # counts a refusal by reason

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check one request or WebSocket and pass it on, or answer the refusal."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path = str(scope.get("path", ""))
        if not host_is_loopback(headers.get("host", "")):
            await self._refuse(
                scope, send, 403, "host_not_allowed",
                "the local API answers only requests addressed to 127.0.0.1 or localhost",
                "call http://127.0.0.1:PORT/ (not a host name that resolves to it)",
                reason="bad_host", path=path,
            )  # fmt: skip
            return
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and path in PUBLIC_PATHS:
            await self.app(scope, receive, send)  # client, hall pages, console: code, no data
            return
        origin = headers.get("origin")
        try:
            known_origins = self.registry.all_origins()
        except AppRegistryError as exc:
            log.error("local API: app registry unusable: %s", exc)  # noqa: TRY400 - one line
            await self._refuse(
                scope, send, 503, "registry_error", "the clerk-app registry cannot be read",
                "ask the technician to check apps.json in the agent's data directory",
                reason="registry", path=path,
            )  # fmt: skip
            return
        if (
            scope["type"] == "http"
            and scope["method"] == "OPTIONS"
            and origin is not None
            and "access-control-request-method" in headers
        ):
            await self._preflight(
                send, origin, allowed=origin in known_origins, path=path,
                private_network=headers.get("access-control-request-private-network") == "true",
            )  # fmt: skip
            return
        if scope["type"] == "http":
            token = self._bearer(headers.get("authorization", ""))
        else:
            token = _ws_token(scope.get("subprotocols") or ())
        app = self.registry.authenticate(token) if token else None
        cors_origin = origin if origin in known_origins else None
        if app is None:
            await self._refuse(
                scope, send, 401, "unauthorized",
                "a valid 'Authorization: Bearer TOKEN' is required" if token is None
                else "the token is not valid (revoked or mistyped)",
                "register the app with 'edge-agent apps add NAME --origin ORIGIN' "
                "and send its token",
                reason="missing_token" if token is None else "bad_token", path=path,
                cors_origin=cors_origin, extra_headers=[(b"www-authenticate", b"Bearer")],
            )  # fmt: skip
            return
        if origin is not None and origin not in app.origins:
            await self._refuse(
                scope, send, 403, "origin_not_allowed",
                f"origin {origin[:200]} is not allowed for this app",
                f"add it with 'edge-agent apps add {app.name} --origin ORIGIN'",
                reason="bad_origin", path=path,
            )  # fmt: skip
            return
        method = scope["method"] if scope["type"] == "http" else "WS"
        if not allows(app.role, method, path):
            await self._refuse(
                scope, send, 403, "role_not_allowed",
                f"a {app.role} app may not call {method} {path[:200]}",
                "use a clerk app's token for this, or register the screen with the right "
                "--role (docs/hall-pages.md)",
                reason="role", path=path, cors_origin=origin,
            )  # fmt: skip
            return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await self._refuse(
                scope, send, 413, "request_too_large",
                f"the request body is over {self.max_body_bytes} bytes", TOO_LARGE_HINT,
                reason="too_large", path=path, cors_origin=origin,
            )  # fmt: skip
            return
        scope.setdefault("state", {})["clerk_app"] = app.name
        scope["state"]["clerk_app_role"] = app.role
        if scope["type"] == "websocket":
            await self.app(scope, receive, self._with_cors(send, origin))
            return
        await self._counted(scope, receive, self._with_cors(send, origin), path=path)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, *, path: str) -> None:
        """Pass the request on, its body counted as it streams (``govedge_http``)."""

        def exceeded() -> None:
            self.refused("too_large")
            log.warning("local API: refused http %s (too_large, streamed)", path[:200])

        async def answer(send: Send, exc: BodyTooLarge) -> None:
            body = error_body("request_too_large", str(exc.detail), TOO_LARGE_HINT)
            await _send_json(send, 413, body)

        await run_counted(
            self.app, scope, receive, send,
            limit=self.max_body_bytes, exceeded=exceeded, answer=answer,
        )  # fmt: skip

    # ---- helpers -------------------------------------------------------------------

    @staticmethod
    def _bearer(value: str) -> str | None:
        scheme, _, token = value.partition(" ")
        token = token.strip()
        return token if scheme.lower() == "bearer" and token else None

    @staticmethod
    def _cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", _EXPOSE_HEADERS.encode()),
            (b"vary", b"Origin"),
        ]

    def _with_cors(self, send: Send, origin: str | None) -> Send:
        if origin is None:
            return send
        extra = self._cors_headers(origin)

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return send_with_cors

    async def _preflight(
        self, send: Send, origin: str, *, allowed: bool, path: str, private_network: bool
    ) -> None:
        if not allowed:
            self.refused("preflight_origin")
            log.warning("local API: refused a CORS preflight for %s from a foreign origin", path)
            await _send_json(send, 403, error_body("origin_not_allowed", "origin not allowed"))
            return
        headers = [
            *self._cors_headers(origin),
            (b"access-control-allow-methods", _ALLOW_METHODS.encode()),
            (b"access-control-allow-headers", _ALLOW_HEADERS.encode()),
            (b"access-control-max-age", _PREFLIGHT_MAX_AGE.encode()),
        ]
        if private_network:
            # Private Network Access: a page on a public or intranet origin asks before
            # calling 127.0.0.1; only a registered app's origin is told yes.
            headers.append((b"access-control-allow-private-network", b"true"))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _refuse(
        self,
        scope: Scope,
        send: Send,
        status: int,
        code: str,
        message: str,
        hint: str,
        *,
        reason: str,
        path: str,
        cors_origin: str | None = None,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.refused(reason)
        log.warning("local API: refused %s %s (%s)", scope["type"], path[:200], reason)
        if scope["type"] == "websocket":
            # Closing before accepting makes the server answer the handshake with 403.
            await send({"type": "websocket.close", "code": 1008, "reason": code})
            return
        headers = list(extra_headers or [])
        if cors_origin is not None:
            headers += self._cors_headers(cors_origin)
        await _send_json(send, status, error_body(code, message, hint), headers=headers)


async def _send_json(
    send: Send,
    status: int,
    body: dict[str, Any],
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
