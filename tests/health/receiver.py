"""A real local HTTP receiver for webhook tests: records every POST, can fail the first N."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    """``url``; ``received`` holds the JSON bodies; ``fail_next`` answers 500 that many times."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.attempts = 0
        self.fail_next = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with lock:
                    outer.attempts += 1
                    failing = outer.fail_next > 0
                    if failing:
                        outer.fail_next -= 1
                    else:
                        outer.received.append(json.loads(body))
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def events(self, outlet_id: str) -> list[tuple[str, str]]:
        """(event, rule) of what arrived for one outlet, in order."""
        return [(p["event"], p["rule"]) for p in list(self.received) if p["outlet_id"] == outlet_id]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
