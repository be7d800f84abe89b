"""Create or update the govedge datasource and dashboards in a Grafana, idempotently.

The datasource (uid ``govedge-metrics``, Prometheus type) points at whatever serves
PromQL over the fleet's metrics: VictoriaMetrics holding the telemetry and scraping
``/metrics``, or a Prometheus. A dashboard is written only when its content differs
from what Grafana has (``version`` and ``id`` aside), so a second sync changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

DATASOURCE_UID = "govedge-metrics"
DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "dashboards"
_IGNORED = {"id", "version"}


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


def sync(
    grafana_url: str,
    token: str,
    *,
    datasource_url: str,
    dashboards: list[dict[str, Any]],
    timeout_s: float = 10.0,
) -> SyncReport:
    """Make Grafana hold our datasource and dashboards; return what changed."""
    api = GrafanaApi.from_url(grafana_url, credential=token, timeout=timeout_s)
    report = SyncReport()
    wanted = _datasource(datasource_url)
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
    for board in dashboards:
        uid = board["uid"]
        try:
            try:
                current = api.dashboard.get_dashboard(uid).get("dashboard", {})
            except GrafanaClientError as exc:
                if exc.status_code != 404:
                    raise
                current = None
            if current is not None and _same(board, current):
                report.dashboards[uid] = "unchanged"
                continue
            api.dashboard.update_dashboard(
                {
                    "dashboard": {**board, "id": None},
                    "overwrite": True,
                    "message": "fleet-server grafana sync",
                }
            )
            report.dashboards[uid] = "created" if current is None else "updated"
        except GrafanaException as exc:
            raise GrafanaSyncError(f"dashboard {uid}", str(exc)) from exc
    return report
