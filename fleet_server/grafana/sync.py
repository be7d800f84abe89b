"""Create or update the govedge datasource and dashboards in a Grafana, idempotently.

The datasource (uid ``govedge-metrics``, Prometheus type) points at whatever serves
PromQL over the fleet's metrics: VictoriaMetrics holding the telemetry and scraping
``/metrics``, or a Prometheus. A dashboard is written only when its content differs
from what Grafana has (``version`` and ``id`` aside) or lies in another folder, so a
second sync changes nothing.

With region scopes (``fleet_server.grafana.scoping``) the dashboards go into folders,
each viewable by one Grafana team only: the whole fleet's set for team
``govedge-fleet``, each scope's copy for its own team. Teams, folders and permission
lists are likewise written only when they differ.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

DATASOURCE_UID = "govedge-metrics"
DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "dashboards"
_IGNORED = {"id", "version"}
_VIEW = 1  # Grafana's folder permission levels: 1 view, 2 edit, 4 admin


class GrafanaSyncError(RuntimeError):
    """Grafana refused a request or could not be reached."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"{step}: {detail}")
        self.step = step


@dataclass(slots=True)
class SyncReport:
    """What one sync did."""

    datasource: str = "unchanged"
    dashboards: dict[str, str] = field(default_factory=dict)
    teams: dict[str, str] = field(default_factory=dict)
    folders: dict[str, str] = field(default_factory=dict)
    permissions: dict[str, str] = field(default_factory=dict)


def validate_dashboard(board: dict[str, Any]) -> list[str]:
    """Problems with a dashboard document (empty when it is fine)."""
    problems = [f"missing {key}" for key in ("uid", "title", "panels", "schemaVersion")
                if key not in board]  # fmt: skip
    ids = [panel.get("id") for panel in board.get("panels", [])]
    if len(ids) != len(set(ids)) or None in ids:
        problems.append("panel ids must be present and unique")
    for panel in board.get("panels", []):
        where = f"panel {panel.get('id')}"
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")):
            problems.append(f"{where}: gridPos needs integer x, y, w, h")
        elif grid["x"] + grid["w"] > 24:
            problems.append(f"{where}: wider than the 24-column grid")
        if not panel.get("targets"):
            problems.append(f"{where}: no targets")
        bad = [
            t
            for t in panel.get("targets", [])
            if t.get("datasource", {}).get("uid") != DATASOURCE_UID or not t.get("expr")
        ]
        if bad:
            problems.append(f"{where}: targets need datasource {DATASOURCE_UID} and expr")
    return problems


def load_dashboards(directory: Path = DASHBOARD_DIR) -> list[dict[str, Any]]:
    """Every ``*.json`` dashboard in ``directory``; raise ``ValueError`` on a bad one."""
    boards = []
    for path in sorted(directory.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        problems = validate_dashboard(board)
        if problems:
            raise ValueError(f"{path.name}: {'; '.join(problems)}")
        boards.append(board)
    return boards


def _datasource(url: str) -> dict[str, Any]:
    return {
        "uid": DATASOURCE_UID,
        "name": "govedge metrics",
        "type": "prometheus",
        "access": "proxy",
        "url": url,
        "isDefault": False,
        "jsonData": {"httpMethod": "POST", "timeInterval": "30s"},
    }


def _same(wanted: dict[str, Any], have: dict[str, Any]) -> bool:
    return {k: v for k, v in wanted.items() if k not in _IGNORED} == {
        k: v for k, v in have.items() if k not in _IGNORED
    }


@dataclass(frozen=True, slots=True)
class FolderPlan:
    """A folder, the team that alone may view it, and the dashboards it holds."""

    uid: str
    title: str
    team: str
    dashboards: list[dict[str, Any]]


def _ensure_datasource(api: Any, url: str, report: SyncReport) -> None:
    wanted = _datasource(url)
    try:
        try:
            have = api.datasource.get_datasource_by_uid(DATASOURCE_UID)
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
            api.datasource.create_datasource(wanted)
            report.datasource = "created"
        else:
            if any(have.get(k) != v for k, v in wanted.items()):
                api.datasource.update_datasource_by_uid(DATASOURCE_UID, wanted)
                report.datasource = "updated"
    except GrafanaException as exc:
        raise GrafanaSyncError("datasource", str(exc)) from exc


def _ensure_dashboard(api: Any, board: dict[str, Any], folder_uid: str, report: SyncReport) -> None:
    uid = board["uid"]
    try:
        try:
            found = api.dashboard.get_dashboard(uid)
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
            found = None
        if found is not None:
            same_folder = (found.get("meta", {}).get("folderUid") or "") == folder_uid
            if same_folder and _same(board, found.get("dashboard", {})):
                report.dashboards[uid] = "unchanged"
                return
        api.dashboard.update_dashboard(
            {
                "dashboard": {**board, "id": None},
                "folderUid": folder_uid,
                "overwrite": True,
                "message": "fleet-server grafana sync",
            }
        )
        report.dashboards[uid] = "created" if found is None else "updated"
    except GrafanaException as exc:
        raise GrafanaSyncError(f"dashboard {uid}", str(exc)) from exc


def _ensure_folder(api: Any, plan: FolderPlan, report: SyncReport) -> None:
    """The folder exists with its title, and only ``plan.team`` may view it."""
    step = f"folder {plan.uid}"
    try:
        teams = [t for t in api.teams.get_team_by_name(plan.team) if t["name"] == plan.team]
        if teams:
            team_id = int(teams[0]["id"])
            report.teams[plan.team] = "unchanged"
        else:
            team_id = int(api.teams.add_team({"name": plan.team})["teamId"])
            report.teams[plan.team] = "created"
        try:
            folder = api.folder.get_folder(plan.uid)
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
            api.folder.create_folder(plan.title, uid=plan.uid)
            report.folders[plan.uid] = "created"
        else:
            if folder.get("title") != plan.title:
                api.folder.update_folder(plan.uid, title=plan.title, overwrite=True)
                report.folders[plan.uid] = "updated"
            else:
                report.folders[plan.uid] = "unchanged"
        # Replacing the folder's permissions drops Grafana's defaults (every Viewer and
        # Editor of the organisation); org admins keep access whatever the list says.
        wanted = [{"teamId": team_id, "permission": _VIEW}]
        have = api.folder.get_folder_permissions(plan.uid)
        if sorted(map(_permission_key, have)) != sorted(map(_permission_key, wanted)):
            api.folder.update_folder_permissions(plan.uid, {"items": wanted})
            report.permissions[plan.uid] = "updated"
        else:
            report.permissions[plan.uid] = "unchanged"
    except GrafanaException as exc:
        raise GrafanaSyncError(step, str(exc)) from exc


def _permission_key(item: dict[str, Any]) -> tuple[int, int, str, int]:
    return (
        int(item.get("teamId") or 0),
        int(item.get("userId") or 0),
        str(item.get("role") or ""),
        int(item["permission"]),
    )


def sync(
    grafana_url: str,
    token: str,
    *,
    datasource_url: str,
    dashboards: list[dict[str, Any]],
    folders: Sequence[FolderPlan] = (),
    timeout_s: float = 10.0,
) -> SyncReport:
    """Make Grafana hold our datasource, dashboards and folders; return what changed.

    Without ``folders`` the dashboards go to Grafana's General folder. With them, each
    folder is made, given to its team alone, and filled, and ``dashboards`` are not
    touched: the caller puts the whole fleet's set in a folder of its own too.
    """
    # grafana-client has no type hints: its API object is passed around as ``Any``.
    api: Any = GrafanaApi.from_url(grafana_url, credential=token, timeout=timeout_s)
    report = SyncReport()
    _ensure_datasource(api, datasource_url, report)
    for board in dashboards:
        _ensure_dashboard(api, board, "", report)
    for plan in folders:
        _ensure_folder(api, plan, report)
        for board in plan.dashboards:
            _ensure_dashboard(api, board, plan.uid, report)
    return report
