"""``fleet-server grafana sync`` against a recorded-contract Grafana: a small local HTTP
server implementing the few endpoints grafana-client calls (no Grafana server can be
installed here), recording every request. Also validates the shipped dashboard JSON."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fleet_server.grafana import DATASOURCE_UID, load_dashboards, validate_dashboard

BIN = Path(sys.executable).parent


class FakeGrafana:
    """Grafana's contract for: GET/POST /api/datasources[/uid/X], PUT /api/datasources/uid/X,
    GET /api/dashboards/uid/X, POST /api/dashboards/db. Requests are recorded."""

    def __init__(self, token: str) -> None:
        self.requests: list[tuple[str, str]] = []
        self.datasources: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, code: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> Any:
                return json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))

            def _route(self, method: str) -> None:
                outer.requests.append((method, self.path))
                if self.headers.get("authorization") != f"Bearer {token}":
                    self._reply(401, {"message": "Unauthorized"})
                    return
                if m := re.fullmatch(r"/api/datasources/uid/([\w-]+)", self.path):
                    uid = m.group(1)
                    if method == "GET":
                        found = outer.datasources.get(uid)
                        self._reply(200, found) if found else self._reply(
                            404, {"message": "Data source not found"}
                        )
                    else:
                        outer.datasources[uid] = {**self._body(), "id": 1}
                        self._reply(200, {"message": "Datasource updated"})
                elif self.path == "/api/datasources" and method == "POST":
                    body = self._body()
                    outer.datasources[body["uid"]] = {**body, "id": 1}
                    self._reply(200, {"message": "Datasource added", "id": 1})
                elif m := re.fullmatch(r"/api/dashboards/uid/([\w-]+)", self.path):
                    found = outer.dashboards.get(m.group(1))
                    self._reply(200, {"dashboard": found, "meta": {}}) if found else self._reply(
                        404, {"message": "Dashboard not found"}
                    )
                elif self.path == "/api/dashboards/db" and method == "POST":
                    body = self._body()
                    board = body["dashboard"]
                    old = outer.dashboards.get(board["uid"])
                    if old and not body.get("overwrite"):
                        self._reply(412, {"status": "version-mismatch"})
                        return
                    version = (old or {}).get("version", 0) + 1
                    outer.dashboards[board["uid"]] = {**board, "id": 7, "version": version}
                    self._reply(200, {"status": "success", "uid": board["uid"], "version": version})
                else:
                    self._reply(404, {"message": "Not found"})

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_PUT(self) -> None:
                self._route("PUT")

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET"]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    fake = FakeGrafana("glsa_test")
    yield fake
    fake.close()


def _sync(grafana: FakeGrafana, token: str = "glsa_test") -> subprocess.CompletedProcess[str]:  # noqa: S107
    return subprocess.run(
        [str(BIN / "fleet-server"), "grafana", "sync", "--url", grafana.url, "--token", token,
         "--datasource-url", "http://vm:8428"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_shipped_dashboards_are_valid() -> None:
    boards = load_dashboards()
    assert {b["uid"] for b in boards} == {
        "govedge-fleet-health", "govedge-device-health", "govedge-queue-evaluations",
        "govedge-policy-figures",
    }  # fmt: skip
    for board in boards:
        assert validate_dashboard(board) == []
    broken = {**boards[0], "panels": [{"id": 1, "gridPos": {"x": 20, "y": 0, "w": 8, "h": 4}}]}
    assert validate_dashboard(broken) == [
        "panel 1: wider than the 24-column grid", "panel 1: no targets"
    ]  # fmt: skip


def test_sync_creates_then_changes_nothing_then_updates(grafana: FakeGrafana) -> None:
    first = _sync(grafana)
    assert first.returncode == 0, first.stderr
    assert "datasource govedge-metrics: created" in first.stdout
    assert grafana.datasources[DATASOURCE_UID]["url"] == "http://vm:8428"
    assert set(grafana.dashboards) == {b["uid"] for b in load_dashboards()}
    assert len(grafana.writes()) == 5  # one datasource, four dashboards

    grafana.requests.clear()
    second = _sync(grafana)
    assert second.returncode == 0, second.stderr
    assert grafana.writes() == []  # idempotent: reads only
    assert second.stdout.count(": unchanged") == 5

    grafana.dashboards["govedge-fleet-health"]["title"] = "edited by hand"
    third = _sync(grafana)
    assert "dashboard govedge-fleet-health: updated" in third.stdout
    assert grafana.dashboards["govedge-fleet-health"]["version"] == 2


def test_sync_reports_a_refused_token(grafana: FakeGrafana) -> None:
    result = _sync(grafana, token="wrong")
    assert result.returncode == 2
    assert "grafana sync failed at datasource" in result.stderr
