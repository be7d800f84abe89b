"""A real HTTP server on loopback that plays the upstream platforms in tests.

One server serves every target on its own path (``/t/{name}``). Per target it can
answer ``ok`` (200 with a case number; 409 when the idempotency key was seen),
``reject`` (422), ``error`` (500) or ``hang`` (sleep past the client timeout), or fail
the next N requests before answering ok; ``stop()``/``start()`` take it down and up on
the same port. It records what it accepted by idempotency key and checks the HMAC; a
body cut short by a client that died mid-request is counted as ``truncated`` instead.

It reads what ``fleet_server.routing.http_adapter`` sends as docs/transactions.md
describes it: a JSON document, or ``multipart/form-data`` with the document part first
and one ``material`` part per material. Multipart bodies are parsed as they arrive
(never held whole): the HMAC is checked over the document part, and each material
part's size and sha256 against what the document says (``bad_materials`` otherwise).
Material bytes up to ``keep_bytes`` are kept for tests to compare; larger ones only
by digest. ``write_targets`` writes the fleet server's targets file pointing at it and
``catalogue_rows`` a catalogue whose items route to such targets (tests and bench/).
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
from io import BufferedIOBase
from pathlib import Path
from typing import Any

from govedge_testbed.ports import free_port

_READ = 64 * 1024


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
    bad_materials: int = 0  # material parts that disagree with the signed document
    keep_bytes: int = 1024 * 1024
    case_prefix: str = "CASE-"  # case numbers are this and a six-digit count
    files: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by key, last seen
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
        kind = handler.headers.get("Content-Type", "")
        files: list[dict[str, Any]] = []
        if kind.startswith("multipart/form-data"):
            boundary = kind.partition("boundary=")[2].strip('"')
            parsed = self._read_multipart(handler.rfile, length, boundary.encode())
            if parsed is None:
                body = None
            else:
                body, files = parsed
        else:
            body = handler.rfile.read(length)
            if len(body) < length:
                body = None
        if body is None:
            with self.lock:
                self.truncated += 1
            handler.close_connection = True
            return None
        signature = handler.headers.get("X-Govedge-Signature", "")
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature, expected):
            with self.lock:
                self.bad_signatures += 1
        if files or kind.startswith("multipart/form-data"):
            described = json.loads(body).get("materials") or []
            seen = [{k: f[k] for k in ("ref", "size", "sha256")} for f in files]
            wanted = [{k: m.get(k) for k in ("ref", "size", "sha256")} for m in described]
            with self.lock:
                if seen != wanted:
                    self.bad_materials += 1
                self.files[handler.headers.get("Idempotency-Key", "")] = files
        return body

    def _read_multipart(
        self, rfile: BufferedIOBase, length: int, boundary: bytes
    ) -> tuple[bytes, list[dict[str, Any]]] | None:
        """(document, material parts) of a multipart body, read in pieces; None if cut."""
        delimiter = b"\r\n--" + boundary
        buffer = b"\r\n"  # the first boundary has no CRLF before it
        remaining = length
        document = bytearray()
        files: list[dict[str, Any]] = []
        current: dict[str, Any] | None = None
        state = "preamble"

        def feed(data: bytes) -> None:
            if current is None or not data:
                return
            if current["ref"] is None:
                document.extend(data)
                return
            current["hash"].update(data)
            current["size"] += len(data)
            if current["size"] <= self.keep_bytes:
                current["data"] += data
            else:
                current["data"] = None

        while True:
            if state in ("preamble", "body"):
                found = buffer.find(delimiter)
                if found >= 0:
                    feed(buffer[:found])
                    buffer = buffer[found + len(delimiter) :]
                    if current is not None and current["ref"] is not None:
                        files.append(current)
                    current, state = None, "after"
                    continue
                keep = len(delimiter) - 1
                if len(buffer) > keep:
                    feed(buffer[:-keep])
                    buffer = buffer[-keep:]
            elif state == "after" and len(buffer) >= 2:
                if buffer.startswith(b"--"):
                    break
                buffer, state = buffer[2:], "headers"
                continue
            elif state == "headers" and b"\r\n\r\n" in buffer:
                raw, _, buffer = buffer.partition(b"\r\n\r\n")
                disposition = next(
                    (line for line in raw.decode().split("\r\n")
                     if line.lower().startswith("content-disposition")), "",
                )  # fmt: skip
                ref = disposition.partition('filename="')[2].partition('"')[0] or None
                current = {"ref": ref, "size": 0, "hash": hashlib.sha256(), "data": b""}
                state = "body"
                continue
            if remaining <= 0:
                return None
            piece = rfile.read(min(_READ, remaining))
            if not piece:
                return None
            remaining -= len(piece)
            buffer += piece
        rfile.read(remaining)  # the epilogue, if any
        out = [
            {"ref": f["ref"], "size": f["size"], "sha256": f["hash"].hexdigest(), "data": f["data"]}
            for f in files
        ]
        return bytes(document), out

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
            case = f"{self.case_prefix}{len(self.accepted) + 1:06d}"
            self.accepted[key] = {
                "case_number": case, "body": json.loads(body), "target": name,
                "files": self.files.get(key, []),
            }  # fmt: skip
            self.accepted_count[key] += 1
            self.by_target.setdefault(name, []).append(key)
        return self._answer(handler, 200, {"case_number": case})


def write_targets(path: Path, upstream: Upstream, names: list[str], **overrides: Any) -> Path:
    """A targets file (``GOVEDGE_UPSTREAM_TARGETS_FILE``) with ``names`` on ``upstream``;
    ``overrides[name]`` replaces settings of one target."""
    targets = [
        {
            "name": name,
            "url": upstream.url(name),
            "headers": {"Authorization": "Bearer test-token"},
            "hmac_secret": upstream.secret.decode(),
            "timeout_s": 0.5,
            "connect_timeout_s": 0.5,
            "max_attempts": 30,
            "backoff_base_s": 0.05,
            "backoff_max_s": 0.2,
            "breaker_threshold": 3,
            "breaker_cooldown_s": 1.0,
        }
        | overrides.get(name, {})
        for name in names
    ]
    path.write_text(json.dumps({"evaluation_target": "hcp", "targets": targets}))
    return path


def catalogue_rows() -> list[dict[str, Any]]:
    """Catalogue items for the targets ``zhoushan``, ``hangzhou``, ``flaky`` and ``dead``."""
    common = {
        "base_code": "000101",
        "name": "居民身份证换领",
        "level": 4,
        "handling_type": "promised",
        "promised_days": 5,
        "department": "公安局",
        "outlet_kinds": ["township_centre", "bank_counter"],
        "handling_mode": "direct",
    }
    return [
        common | {"code": "ZS-000101", "region_codes": ["3309"], "target": "zhoushan"},
        common | {"code": "HZ-000101", "region_codes": ["3301"], "target": "hangzhou"},
        common | {"code": "FLAKY-1", "base_code": "000201", "region_codes": ["33"], "target": "flaky"},  # noqa: E501
        common | {"code": "DEAD-1", "base_code": "000301", "region_codes": ["33"], "target": "dead"},  # noqa: E501
    ]  # fmt: skip
