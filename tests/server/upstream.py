"""A real HTTP server on loopback that plays the upstream platforms in tests.

One server serves every target on its own path (``/t/{name}``). Per target it can
answer ``ok`` (200 with a case number; 409 when the idempotency key was seen),
``reject`` (422), ``error`` (500) or ``hang`` (sleep past the client timeout), or fail
the next N requests before answering ok; ``stop()``/``start()`` take it down and up on
the same port. It records what it accepted by idempotency key and checks the HMAC; a
body cut short by a client that died mid-request is counted as ``truncated`` instead.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from govedge_testbed import free_port


@dataclass
class TargetState:
    mode: str = "ok"
    fail_next: int = 0
    fail_mode: str = "error"
    hang_s: float = 2.0
    delay_s: float = 0.0
    requests: int = 0


@dataclass
class Upstream:
    secret: bytes = b"test-shared-secret"
    port: int = field(default_factory=free_port)
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    accepted_count: Counter[str] = field(default_factory=Counter)
    received: Counter[str] = field(default_factory=Counter)
    by_target: dict[str, list[str]] = field(default_factory=dict)
    bad_signatures: int = 0
    truncated: int = 0  # bodies cut short by a client that went away (see read_body)
    targets: dict[str, TargetState] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/t/{name}"

    def target(self, name: str) -> TargetState:
        with self.lock:
            return self.targets.setdefault(name, TargetState())

    def start(self) -> None:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                upstream.handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _answer(self, handler: BaseHTTPRequestHandler, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        try:
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            return  # the client gave up (timeout): that is the point of "hang"

    def read_body(self, handler: BaseHTTPRequestHandler) -> bytes | None:
        """The request body, its signature checked; ``None`` if the client left mid-body.

        A sender killed between writing the headers and the end of the body (httpx
        writes them separately) leaves a short body and a closed connection: that is no
        request at all (no one is there to answer), counted as ``truncated``, never as a
        bad signature: the HMAC of a cut body cannot match.
        """
        length = int(handler.headers.get("Content-Length", "0"))
        body = handler.rfile.read(length)
        if len(body) < length:
            with self.lock:
                self.truncated += 1
            handler.close_connection = True
            return None
        signature = handler.headers.get("X-Govedge-Signature", "")
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature, expected):
            with self.lock:
                self.bad_signatures += 1
        return body

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        name = handler.path.rsplit("/", 1)[-1]
        body = self.read_body(handler)
        if body is None:
            return None
        key = handler.headers.get("Idempotency-Key", "")
        state = self.target(name)
        with self.lock:
            state.requests += 1
            self.received[key] += 1
            mode = state.mode
            if state.fail_next > 0:
                state.fail_next -= 1
                mode = state.fail_mode
        if state.delay_s:
            time.sleep(state.delay_s)
        if mode == "hang":
            time.sleep(state.hang_s)
            return self._answer(handler, 200, {"late": True})
        if mode == "error":
            return self._answer(handler, 500, {"message": "upstream broken"})
        if mode == "reject":
            return self._answer(handler, 422, {"reason": "materials incomplete"})
        with self.lock:
            if key in self.accepted:
                case = self.accepted[key]["case_number"]
                return self._answer(handler, 409, {"case_number": case, "reason": "duplicate"})
            case = f"CASE-{len(self.accepted) + 1:06d}"
            self.accepted[key] = {"case_number": case, "body": json.loads(body), "target": name}
            self.accepted_count[key] += 1
            self.by_target.setdefault(name, []).append(key)
        return self._answer(handler, 200, {"case_number": case})
