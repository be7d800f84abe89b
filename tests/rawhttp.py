"""HTTP over a raw socket, for what ordinary clients will not send: a chunked request
body that never ends."""

from __future__ import annotations

import select
import socket
from collections.abc import Mapping

RESET = b"<reset>"
_CHUNK = b"x" * 4096


def endless_chunked(
    port: int,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    source: str = "127.0.0.1",
    cap: int = 64 * 1024 * 1024,
) -> bytes:
    """POST a chunked body that never ends to 127.0.0.1:``port`` from ``source``; return
    what the server answered once it stopped the upload (AssertionError if it reads
    ``cap`` bytes).

    A server that closes a connection with unread bytes makes the kernel send a reset,
    which may overtake its answer: then ``RESET`` is returned, and the caller tells it
    from any other reset by the server's refusal counter or log."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    with socket.create_connection(
        ("127.0.0.1", port), timeout=10, source_address=(source, 0)
    ) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"{extra}Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        sent = 0
        frame = b"%x\r\n%s\r\n" % (len(_CHUNK), _CHUNK)
        while sent < cap:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(_CHUNK)
        assert sent < cap, "the server kept reading a body far over its limit"
        answer = b""
        try:
            while chunk := sock.recv(65536):  # the server closes the connection after 413
                answer += chunk
        except ConnectionResetError:
            return answer or RESET
        return answer
