"""Real local HTTP receivers that answer as DingTalk's custom robot and WeCom's group
robot do, written from their documentation (not from the server's code):

* DingTalk: ``POST /robot/send?access_token=T[&timestamp=MS&sign=S]`` with a JSON
  message; for a robot secured by signing, ``S`` must be base64(HMAC-SHA256(key=secret,
  msg="MS\\nsecret")) and ``MS`` within an hour of now, else ``errcode`` 310000. The
  answer is HTTP 200 with ``{"errcode": 0, "errmsg": "ok"}`` when the message is taken.
* WeCom: ``POST /cgi-bin/webhook/send?key=K`` with a JSON message; a wrong key answers
  ``errcode`` 93000.

``fail_next`` makes the next answers HTTP 500 (a robot's server in trouble).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class RobotReceiver:
    """``url`` (the robot's webhook URL), ``received`` (accepted messages), ``refused``
    (errcodes given), ``attempts``."""

    def __init__(self, kind: str, *, token: str, secret: str | None = None) -> None:
        self.kind = kind
        self.token = token
        self.secret = secret
        self.received: list[dict[str, Any]] = []
        self.queries: list[dict[str, list[str]]] = []
        self.refused: list[int] = []
        self.attempts = 0
        self.fail_next = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                with lock:
                    outer.attempts += 1
                    outer.queries.append(query)
                    if outer.fail_next > 0:
                        outer.fail_next -= 1
                        self.send_response(500)
                        self.end_headers()
                        return
                    code = outer.check(parts.path, query, json.loads(body))
                    if code == 0:
                        outer.received.append(json.loads(body))
                    else:
                        outer.refused.append(code)
                answer = json.dumps({"errcode": code, "errmsg": "ok" if code == 0 else "no"})
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.url = (
            f"{base}/robot/send?access_token={token}"
            if kind == "dingtalk"
            else f"{base}/cgi-bin/webhook/send?key={token}"
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def check(self, path: str, query: dict[str, list[str]], body: dict[str, Any]) -> int:
        """The errcode the real robot would answer."""
        if self.kind == "wecom":
            if path != "/cgi-bin/webhook/send" or query.get("key") != [self.token]:
                return 93000
            return 0 if body.get("msgtype") in ("text", "markdown") else 40008
        if path != "/robot/send" or query.get("access_token") != [self.token]:
            return 300001
        if self.secret is not None:
            stamp, sign = query.get("timestamp", [""])[0], query.get("sign", [""])[0]
            if not stamp.isdigit() or abs(time.time() * 1000 - int(stamp)) > 3_600_000:
                return 310000
            to_sign = f"{stamp}\n{self.secret}".encode()
            expected = base64.b64encode(
                hmac.new(self.secret.encode(), to_sign, hashlib.sha256).digest()
            ).decode()
            if not hmac.compare_digest(sign, expected):
                return 310000
        return 0 if body.get("msgtype") in ("text", "markdown") else 40035

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
