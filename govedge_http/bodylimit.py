"""A request body counted as it streams, cut off with 413 past its limit.

A body without ``Content-Length`` (``Transfer-Encoding: chunked``) can only be measured
while it is read. ``run_counted`` passes the request on with a ``receive`` that counts
the bytes: the read that crosses the limit raises ``BodyTooLarge`` (an
``HTTPException`` 413, so the app's own handlers answer it like any other error) and
nothing more is read. The answer then carries ``Connection: close``: the rest of the
body is still on the socket, so the connection cannot be reused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyTooLarge", "run_counted"]


class BodyTooLarge(HTTPException):
    """A streamed request body grew past ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=f"the request body is over {limit} bytes")
        self.limit = limit


async def run_counted(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    limit: int,
    exceeded: Callable[[], None],
    answer: Callable[[Send, BodyTooLarge], Awaitable[None]],
) -> None:
    """Run ``app`` on the request, its body limited to ``limit`` bytes.

    ``exceeded`` is called once when the limit is crossed (count it, log it);
    ``answer`` sends the 413 when the body was read outside the app's handlers (by a
    middleware or raw ASGI code) and no answer was started yet.
    """
    seen = 0
    started = False

    async def counting_receive() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                exceeded()
                raise BodyTooLarge(limit)
        return message

    async def closing_send(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
            if seen > limit:  # the rest of the body is never read: end the connection
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
        await send(message)

    try:
        await app(scope, counting_receive, closing_send)
    except BodyTooLarge as exc:
        if started:
            raise
        await answer(closing_send, exc)
