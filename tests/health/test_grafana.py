"""``fleet-server grafana sync`` against a recorded-contract Grafana: a small local HTTP
server implementing the few endpoints grafana-client calls (no Grafana server can be
installed here), recording every request. Also validates the shipped dashboard JSON."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fleet_server.grafana import DATASOURCE_UID, load_dashboards, validate_dashboard
from fleet_server.grafana.scoping import folder_plans
from fleet_server.timeseries import telemetry_lines
from govedge_testbed import VictoriaMetrics
from govedge_wire import Telemetry
from tests.health.conftest import add_user
from tests.server.helpers import poll

BIN = Path(sys.executable).parent


class FakeGrafana:
    """Grafana's HTTP contract for what the sync calls, as documented for Grafana 10/11:
    GET/POST /api/datasources[/uid/X], PUT /api/datasources/uid/X; GET /api/dashboards/uid/X
    (``meta.folderUid``, "" for General), POST /api/dashboards/db (``folderUid``; a missing
    folder is 400); GET /api/teams/search?name=X (exact name), POST /api/teams (a taken name
    is 409); GET/POST /api/folders[/X] and PUT /api/folders/X (``overwrite``); GET/POST
    /api/folders/X/permissions (POST replaces the whole list; a new folder starts with
    Grafana's defaults: its creator Admin, the Editor role Edit, the Viewer role View).
    Requests are recorded. ``seen_by`` applies Grafana's rule for who sees a dashboard."""

    SERVICE_ACCOUNT_ID = 5

    def __init__(self, token: str) -> None:
        self.requests: list[tuple[str, str]] = []
        self.datasources: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.dashboard_folders: dict[str, str] = {}
        self.teams: dict[int, str] = {}
        self.folders: dict[str, dict[str, Any]] = {}
        self.permissions: dict[str, list[dict[str, Any]]] = {}
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
                url = urllib.parse.urlsplit(self.path)
                path, query = url.path, urllib.parse.parse_qs(url.query)
                if path.startswith("/api/datasources"):
                    self._datasources(method, path)
                elif path.startswith("/api/dashboards"):
                    self._dashboards(method, path)
                elif path.startswith("/api/teams"):
                    self._teams(method, path, query)
                elif path.startswith("/api/folders"):
                    self._folders(method, path)
                else:
                    self._reply(404, {"message": "Not found"})

            def _datasources(self, method: str, path: str) -> None:
                if m := re.fullmatch(r"/api/datasources/uid/([\w-]+)", path):
                    uid = m.group(1)
                    if method == "GET":
                        found = outer.datasources.get(uid)
                        self._reply(200, found) if found else self._reply(
                            404, {"message": "Data source not found"}
                        )
                    else:
                        outer.datasources[uid] = {**self._body(), "id": 1}
                        self._reply(200, {"message": "Datasource updated"})
                elif path == "/api/datasources" and method == "POST":
                    body = self._body()
                    outer.datasources[body["uid"]] = {**body, "id": 1}
                    self._reply(200, {"message": "Datasource added", "id": 1})
                else:
                    self._reply(404, {"message": "Not found"})

            def _dashboards(self, method: str, path: str) -> None:
                if m := re.fullmatch(r"/api/dashboards/uid/([\w-]+)", path):
                    uid = m.group(1)
                    found = outer.dashboards.get(uid)
                    if not found:
                        self._reply(404, {"message": "Dashboard not found"})
                        return
                    folder = outer.dashboard_folders.get(uid, "")
                    title = outer.folders[folder]["title"] if folder else "General"
                    self._reply(200, {"dashboard": found, "meta": {
                        "folderUid": folder, "folderTitle": title,
                        "folderId": outer.folders[folder]["id"] if folder else 0,
                    }})  # fmt: skip
                elif path == "/api/dashboards/db" and method == "POST":
                    body = self._body()
                    board, folder = body["dashboard"], body.get("folderUid") or ""
                    if folder and folder not in outer.folders:
                        self._reply(400, {"message": "folder not found", "status": "not-found"})
                        return
                    old = outer.dashboards.get(board["uid"])
                    if old and not body.get("overwrite"):
                        self._reply(412, {"status": "version-mismatch"})
                        return
                    version = (old or {}).get("version", 0) + 1
                    outer.dashboards[board["uid"]] = {**board, "id": 7, "version": version}
                    outer.dashboard_folders[board["uid"]] = folder
                    self._reply(200, {"status": "success", "uid": board["uid"], "version": version})
                else:
                    self._reply(404, {"message": "Not found"})

            def _teams(self, method: str, path: str, query: dict[str, list[str]]) -> None:
                if path == "/api/teams/search" and method == "GET":
                    name, text = query.get("name", [None])[0], query.get("query", [""])[0]
                    teams = [
                        {"id": i, "orgId": 1, "name": n, "email": "", "avatarUrl": "",
                         "memberCount": 0}
                        for i, n in sorted(outer.teams.items())
                        if (n == name if name is not None else text.lower() in n.lower())
                    ]  # fmt: skip
                    self._reply(200, {"totalCount": len(teams), "teams": teams, "page": 1,
                                      "perPage": 1000})  # fmt: skip
                elif path == "/api/teams" and method == "POST":
                    name = self._body()["name"]
                    if name in outer.teams.values():
                        self._reply(409, {"message": "Team name taken"})
                        return
                    team_id = len(outer.teams) + 1
                    outer.teams[team_id] = name
                    self._reply(200, {"message": "Team created", "teamId": team_id})
                else:
                    self._reply(404, {"message": "Not found"})

            def _folders(self, method: str, path: str) -> None:
                if path == "/api/folders" and method == "POST":
                    body = self._body()
                    if body["uid"] in outer.folders:
                        self._reply(409, {"message": "a folder with the same uid already exists"})
                        return
                    folder = {"id": len(outer.folders) + 1, "uid": body["uid"],
                              "title": body["title"], "url": f"/dashboards/f/{body['uid']}/",
                              "version": 1}  # fmt: skip
                    outer.folders[body["uid"]] = folder
                    outer.permissions[body["uid"]] = [
                        {"userId": outer.SERVICE_ACCOUNT_ID, "permission": 4},
                        {"role": "Editor", "permission": 2},
                        {"role": "Viewer", "permission": 1},
                    ]
                    self._reply(200, folder)
                    return
                m = re.fullmatch(r"/api/folders/([\w-]+)(/permissions)?", path)
                folder = outer.folders.get(m.group(1)) if m else None
                if folder is None or m is None:
                    self._reply(404, {"message": "folder not found", "status": "not-found"})
                elif m.group(2) and method == "GET":
                    self._reply(200, [outer.permission_row(folder, item)
                                      for item in outer.permissions[folder["uid"]]])  # fmt: skip
                elif m.group(2) and method == "POST":
                    items = self._body()["items"]
                    if any(i.get("teamId") and i["teamId"] not in outer.teams for i in items):
                        self._reply(400, {"message": "Team not found"})
                        return
                    outer.permissions[folder["uid"]] = items
                    self._reply(200, {"message": "Folder permissions updated"})
                elif method == "GET":
                    self._reply(200, folder)
                elif method == "PUT":
                    body = self._body()
                    if not body.get("overwrite") and body.get("version") != folder["version"]:
                        self._reply(412, {"message": "the folder has been changed by someone else"})
                        return
                    folder.update(title=body.get("title", folder["title"]),
                                  version=folder["version"] + 1)  # fmt: skip
                    self._reply(200, folder)
                else:
                    self._reply(405, {"message": "Method not allowed"})

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

    def permission_row(self, folder: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
        """One entry of GET /api/folders/X/permissions, with every field Grafana sends."""
        team_id = int(item.get("teamId") or 0)
        return {
            "folderId": folder["id"], "created": "2026-12-01T08:00:00Z",
            "updated": "2026-12-01T08:00:00Z", "userId": int(item.get("userId") or 0),
            "userLogin": "sa-govedge" if item.get("userId") else "", "userEmail": "",
            "teamId": team_id, "team": self.teams.get(team_id, ""), "role": item.get("role", ""),
            "permission": item["permission"],
            "permissionName": {1: "View", 2: "Edit", 4: "Admin"}[item["permission"]],
            "uid": folder["uid"], "title": folder["title"], "slug": folder["uid"],
            "isFolder": True, "url": folder["url"], "inherited": False,
        }  # fmt: skip

    def seen_by(self, *, role: str = "Viewer", teams: tuple[str, ...] = ()) -> set[str]:
        """The dashboards an organisation member with ``role`` in ``teams`` may view:
        General's to every member, a folder's to the roles and teams its list names."""
        team_ids = {i for i, n in self.teams.items() if n in teams}
        seen = set()
        for uid, folder in self.dashboard_folders.items():
            grants = self.permissions.get(folder, [])
            if not folder or any(
                g.get("role") == role or g.get("teamId") in team_ids for g in grants
            ):
                seen.add(uid)
        return seen

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


def _sync(
    grafana: FakeGrafana,
    *args: str,
    token: str = "glsa_test",  # noqa: S107
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "fleet-server"), "grafana", "sync", "--url", grafana.url, "--token", token,
         "--datasource-url", "http://vm:8428", *args],
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


# A series name in PromQL: what a scoped query must never read without the scope's filter.
_SERIES = re.compile(r'"(?:[^"\\]|\\.)*"|(?<![\w:])((?:govedge|outlet|device)_[\w:]*)(\{[^}]*\})?')
_TARGETS = {"govedge_figure_target", "govedge_figure_service_items_target"}


def _selectors(expr: str) -> list[tuple[str, str]]:
    """(series name, its matchers) for every series an expression reads."""
    return [(m.group(1), m.group(2) or "") for m in _SERIES.finditer(expr) if m.group(1)]


def _content(board: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in board.items() if k not in ("id", "version")}


def _queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL text of a dashboard: panel targets and template-variable queries."""
    found = [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    for variable in board.get("templating", {}).get("list", []):
        found += [variable["query"]["query"], variable["definition"]]
    return found


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("scope", "matcher"),
    [(("4101",), 'region=~"4101.*"'), (("4101", "4102"), 'region=~"(4101|4102).*"')],
)
def test_every_query_of_a_scoped_dashboard_carries_the_scope(
    scope: tuple[str, ...], matcher: str
) -> None:
    boards = load_dashboards()
    fleet, scoped = folder_plans(boards, [scope])
    assert fleet.dashboards == boards  # the whole fleet's set, as shipped
    assert load_dashboards() == boards  # and not altered by the copying
    by_source = {b["uid"].rsplit("-", len(scope))[0]: b for b in scoped.dashboards}
    # Every panel whose series carry a region is kept; fleet totals and the server's
    # own counters are not (a county's operator has no business with them).
    kept = {uid: sorted(p["id"] for p in b["panels"]) for uid, b in by_source.items()}
    assert kept == {
        "govedge-fleet-health": [1, 2],  # outlets online, offline: from the regional twin
        "govedge-device-health": [1, 2, 3, 4],
        "govedge-queue-evaluations": [1, 2],
        "govedge-policy-figures": list(range(1, 12)),
    }
    for board in scoped.dashboards:
        assert validate_dashboard(board) == []
        assert len(board["uid"]) <= 40
        for expr in _queries(board):
            selectors = _selectors(expr)
            assert selectors, expr
            for name, matchers in selectors:
                if name not in _TARGETS:
                    assert matchers.startswith("{" + matcher), (board["uid"], expr)


@pytest.mark.timeout(120)
def test_scoped_sync_gives_each_county_its_folder_and_team_only(grafana: FakeGrafana) -> None:
    first = _sync(grafana, "--scope", "4101", "--scope", "4102,4103")
    assert first.returncode == 0, first.stderr
    assert set(grafana.teams.values()) == {
        "govedge-fleet", "govedge-region-4101", "govedge-region-4102-4103"
    }  # fmt: skip
    assert set(grafana.folders) == {
        "govedge-fleet", "govedge-region-4101", "govedge-region-4102-4103"
    }  # fmt: skip
    shipped = {b["uid"]: b for b in load_dashboards()}
    for uid, board in shipped.items():  # the whole fleet's dashboards are as shipped
        assert _content(grafana.dashboards[uid]) == _content(board)
        assert grafana.dashboard_folders[uid] == "govedge-fleet"
    county = grafana.seen_by(teams=("govedge-region-4101",))
    assert county == {
        "govedge-fleet-health-4101", "govedge-device-health-4101",
        "govedge-queue-evaluations-4101", "govedge-policy-figures-4101",
    }  # fmt: skip
    assert grafana.seen_by(teams=("govedge-fleet",)) == set(shipped)
    assert grafana.seen_by() == set()  # a member in no team sees no govedge dashboard
    # Grafana's defaults (every Viewer and Editor) are gone from each folder.
    for folder, items in grafana.permissions.items():
        team = next(i for i, n in grafana.teams.items() if n == folder)
        assert items == [{"teamId": team, "permission": 1}]

    grafana.requests.clear()
    second = _sync(grafana, "--scope", "4101", "--scope", "4102,4103")
    assert second.returncode == 0, second.stderr
    assert grafana.writes() == []  # idempotent: reads only
    assert "created" not in second.stdout
    assert "updated" not in second.stdout

    grafana.permissions["govedge-region-4101"].append({"role": "Viewer", "permission": 1})
    third = _sync(grafana, "--scope", "4101", "--scope", "4102,4103")
    assert "permissions govedge-region-4101: updated" in third.stdout
    assert grafana.seen_by() == set()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("scope", "reason"),
    [
        ("41x", "region prefix '41x' must be 2-12 digits"),
        ("410102", "410102 is deeper than the policy figures' region label (4 digits"),
        ("4101,", "region prefix '' must be 2-12 digits"),
    ],
)
def test_bad_scopes_are_refused_before_grafana_is_touched(
    grafana: FakeGrafana, scope: str, reason: str
) -> None:
    result = _sync(grafana, "--scope", "4101", "--scope", scope)
    assert result.returncode == 2
    assert "scope refused" in result.stderr
    assert reason in result.stderr, result.stderr
    assert grafana.requests == []


@pytest.mark.timeout(120)
def test_scopes_are_read_from_the_fleets_users(grafana: FakeGrafana, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    add_user(url, "zhengzhou", "viewer", regions=("4101",))
    add_user(url, "zhengzhou2", "operator", regions=("4101",))
    add_user(url, "luoyang", "viewer", regions=("4103",))
    add_user(url, "province", "viewer")
    result = _sync(grafana, "--scopes-from-users", "--database-url", url)
    assert result.returncode == 0, result.stderr
    assert set(grafana.folders) == {"govedge-fleet", "govedge-region-4101", "govedge-region-4103"}


def _query(store: VictoriaMetrics, expr: str) -> list[dict[str, Any]]:
    """An instant query, as Grafana's Prometheus datasource sends it (POST form)."""
    body = urllib.parse.urlencode({"query": expr}).encode()
    with urllib.request.urlopen(f"{store.url}/api/v1/query", data=body, timeout=10) as reply:  # noqa: S310
        answer = json.loads(reply.read())
    assert answer["status"] == "success", (expr, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


@pytest.mark.timeout(120)
def test_scoped_queries_answer_only_the_countys_series(
    victoria: VictoriaMetrics, outlet_id: str
) -> None:
    """The rewritten PromQL run by a real VictoriaMetrics (the store the docs name) over
    two counties' telemetry and figures: every answer is the county's, none is empty
    where the county has data. Grafana itself cannot run here (see FakeGrafana)."""
    now = datetime.now(UTC)
    inside, outside = f"{outlet_id}-in", f"{outlet_id}-out"
    lines = []
    for outlet, region in ((inside, "410102001"), (outside, "410302001")):
        message = Telemetry(outlet_id=outlet, session=1, seq=1,
                            metrics={"cpu_percent": 12.5, "disk_used_percent": 40.0,
                                     "outbox_oldest_age_s": 3, "outbox_depth_transaction": 2},
                            devices={"reader-1": {"reads_failed": 1}})  # fmt: skip
        lines += telemetry_lines(message, received_at=now, region=region)
    figures = "".join(
        f'govedge_figure_{name}{{region="{region}",kind="kiosk"}} {value}\n'
        for region in ("4101", "4103")
        for name, value in (("cases", 10), ("active_evaluations", 7), ("outlets", 2),
                            ("service_items", 30), ("evaluations", 7), ("satisfied", 6))
    ) + "".join(
        f'govedge_region_outlets{{region="{region}",state="{state}"}} {value}\n'
        for region, state, value in (("4101", "online", 3), ("4103", "online", 5),
                                     ("4101", "offline", 1), ("4103", "offline", 2))
    )  # fmt: skip
    for path, body in (
        ("/write?precision=ms", "\n".join(lines)),
        ("/api/v1/import/prometheus", figures),
    ):
        urllib.request.urlopen(f"{victoria.url}{path}", data=body.encode(), timeout=10).close()  # noqa: S310
    (_fleet, scoped) = folder_plans(load_dashboards(), [("4101",)])
    board = {b["uid"]: b for b in scoped.dashboards}
    cpu = board["govedge-device-health-4101"]["panels"][0]["targets"][0]["expr"]
    poll(lambda: any(s["metric"]["outlet_id"] == inside for s in _query(victoria, cpu)),
         timeout=30, what="the telemetry searchable")  # fmt: skip
    poll(lambda: _query(victoria, 'govedge_figure_cases{region="4103"}'), timeout=30,
         what="the figures searchable")  # fmt: skip
    answered = 0
    for scoped_board in scoped.dashboards:
        for panel in scoped_board["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$region", ".*").replace("$kind", ".*")
                for series in _query(victoria, expr):
                    answered += 1
                    labels = series["metric"]
                    assert labels.get("outlet_id") != outside, (expr, labels)
                    assert labels.get("region", "4101").startswith("4101"), (expr, labels)
    assert answered > 0
    whole = [s["metric"].get("outlet_id") for s in _query(victoria, "outlet_cpu_percent")]
    assert outside in whole  # the whole fleet's query does see the other county
    online = board["govedge-fleet-health-4101"]["panels"][0]["targets"][0]["expr"]
    assert [float(s["value"][1]) for s in _query(victoria, online)] == [3.0]
    county = [s["metric"]["outlet_id"] for s in _query(victoria, cpu)]
    assert inside in county
    assert outside not in county
