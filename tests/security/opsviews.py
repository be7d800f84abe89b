"""What an operator can read from a running ``fleet-server``: every GET route of its
OpenAPI document, the web UI pages, ``/metrics`` and the probes, recorded per request."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.e2e.conftest import E2E_PASSWORD, Server

STREAM_CHUNKS = 5
PROBES = ("/metrics", "/healthz", "/readyz")


def ui_pages(outlet_id: str) -> tuple[str, ...]:
    """The web UI's pages (they are not in the OpenAPI document)."""
    return ("/ui", "/ui/overview", "/ui/map", f"/ui/outlets/{outlet_id}", "/ui/data/map",
            "/ui/data/evaluations", "/ui/evaluations", "/ui/config", "/ui/data/config")  # fmt: skip


def admin_name(server: Server) -> str:
    """The user ``tests.e2e.conftest.start_server`` created with ``server.token``."""
    return f"e2e-admin-{server.url.rsplit(':', 1)[1]}"


@dataclass
class Answers:
    """Every HTTP answer an operator got, by what was asked."""

    bodies: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def get(self, client: httpx.Client, url: str, label: str, **kwargs: Any) -> httpx.Response:
        response = client.get(url, **kwargs)
        self.bodies[label] = response.text
        self.statuses[label] = response.status_code
        return response

    def stream(self, client: httpx.Client, url: str, label: str) -> None:
        """The first seconds of a server-sent event stream (it never ends by itself)."""
        chunks: list[str] = []
        try:
            with client.stream("GET", url, timeout=httpx.Timeout(10, read=3)) as response:
                self.statuses[label] = response.status_code
                for chunk in response.iter_text():
                    chunks.append(chunk)
                    if len(chunks) >= STREAM_CHUNKS:
                        break
        except httpx.ReadTimeout:
            pass  # nothing more within the read timeout: what came is what we scan
        self.bodies[label] = "".join(chunks)

    def server_errors(self) -> dict[str, int]:
        return {k: v for k, v in self.statuses.items() if v >= httpx.codes.INTERNAL_SERVER_ERROR}

    def read_api(self, op: httpx.Client, values: dict[str, str]) -> None:
        """GET every route of ``/openapi.json`` whose path parameters ``values`` fills."""
        spec = op.get("/openapi.json").json()
        for path, methods in sorted(spec["paths"].items()):
            if "get" not in methods:
                continue
            if any(p not in values for p in re.findall(r"{(\w+)}", path)):
                self.skipped.append(path)
                continue
            url = path.format(**values)
            if "text/event-stream" in json.dumps(methods["get"].get("responses", {})):
                self.stream(op, url, f"GET {url}")
            else:
                self.get(op, url, f"GET {url}")
        for path in PROBES:
            self.get(op, path, f"GET {path}")

    def read_ui(self, server: Server, outlet_id: str) -> None:
        """Log in to the web UI as the test's admin and GET every page."""
        login = httpx.post(
            f"{server.url}/ui/login",
            data={"username": admin_name(server), "password": E2E_PASSWORD},
            follow_redirects=False,
            timeout=30,
        )
        assert login.status_code == httpx.codes.SEE_OTHER, login.text
        with httpx.Client(base_url=server.url, timeout=30) as browser:
            # The cookie is Secure (HTTPS in production); this test server speaks plain
            # HTTP, so the jar gets it as a plain cookie (also kept across redirects).
            browser.cookies.set("govedge_session", login.cookies["govedge_session"])
            for page in ui_pages(outlet_id):
                self.get(browser, page, f"UI {page}", follow_redirects=True)
