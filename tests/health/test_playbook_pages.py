"""The playbook runs pages over plain HTTP (auth on, bearer tokens): they render in zh
and en with their navigation link, serve playbooks.js, and carry whether the user may
start and cancel runs (technicians and admins yes, with the catalogue and the alert
rules for the form; operators and viewers no, and get no catalogue). The runs list
says how many outlets of each run are in each state; the outlet page carries the
outlet's runs. The runs themselves are read by playbooks.js from the runs API."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fleet_server.alerts.rules import RULE_NAMES
from fleet_server.playbooks.tables import PlaybookHost, PlaybookRun
from fleet_server.security import Role
from tests.security.api_harness import Api, running_api
from tests.server.playbooks.kit import DATA

_BOOT = re.compile(r'<script id="boot" type="application/json">(.*?)</script>', re.S)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path, mqtt_url="mqtt://127.0.0.1:1", playbooks_dir=DATA) as harness:
        yield harness


def _page(api: Api, path: str, role: Role, **params: str) -> tuple[str, dict[str, Any]]:
    answer = api.client.get(path, params=params, headers=api.as_role(role))
    assert answer.status_code == 200, answer.text
    found = _BOOT.search(answer.text)
    assert found is not None
    boot: dict[str, Any] = json.loads(found.group(1))
    return answer.text, boot


def _run(api: Api, hosts: dict[str, tuple[str, int]]) -> int:
    """A finished run stored as the worker leaves it: outlet → (status, changed)."""
    with api.session() as session, session.begin():
        run = PlaybookRun(
            playbook="mark.yml", status="failed", check_mode=False, during_opening_hours=False,
            forks=5, target={"regions": ["4104"]}, extra_vars={}, created_at=datetime.now(UTC),
            created_by="u-technician",
        )  # fmt: skip
        session.add(run)
        session.flush()
        for outlet, (host_status, changed) in hosts.items():
            session.add(PlaybookHost(
                run_id=run.id, outlet_id=outlet, status=host_status, ok=changed + 1,
                changed=changed, failed=int(host_status == "failed"), unreachable=0, skipped=0,
                held_reason="open now (opening hours)" if host_status == "held" else None,
            ))  # fmt: skip
        run_id: int = run.id
    return run_id


@pytest.mark.parametrize(
    ("lang", "html_lang", "nav"), [("zh", "zh-CN", "运维剧本"), ("en", "en", "Playbook runs")]
)
def test_runs_page_renders_in_both_languages_with_its_nav_link(
    api: Api, lang: str, html_lang: str, nav: str
) -> None:
    html, boot = _page(api, "/ui/playbook-runs", Role.VIEWER, lang=lang)
    assert f'<html lang="{html_lang}">' in html
    assert f'<a href="/ui/playbook-runs" class="on">{nav}</a>' in html
    assert re.search(r'<script src="/ui/static/playbooks\.js\?v=[0-9a-f]{12}"></script>', html)
    assert boot["page"] == "playbook-runs"
    assert boot["data"] == {"run_id": None, "can_run": False}
    assert boot["t"]["pb_cancel"] == ("取消执行" if lang == "zh" else "Cancel the run")
    # Every other page links here too.
    overview, _ = _page(api, "/ui/overview", Role.VIEWER, lang=lang)
    assert f'<a href="/ui/playbook-runs" class="">{nav}</a>' in overview


@pytest.mark.parametrize(
    ("role", "can_run"),
    [(Role.VIEWER, False), (Role.OPERATOR, False), (Role.TECHNICIAN, True), (Role.ADMIN, True)],
)
def test_the_start_form_is_offered_to_those_who_may_run(
    api: Api, role: Role, can_run: bool
) -> None:
    _, boot = _page(api, "/ui/playbook-runs", role)
    assert boot["data"]["can_run"] is can_run
    if can_run:
        names = [p["name"] for p in boot["data"]["playbooks"]]
        assert names == ["mark.yml", "slow.yml"]
        assert boot["data"]["alert_rules"] == list(RULE_NAMES)
    else:
        assert "playbooks" not in boot["data"]
    run_id = _run(api, {"o-1": ("changed", 1)})
    html, boot = _page(api, f"/ui/playbook-runs/{run_id}", role)
    assert boot["page"] == "playbook-run"
    assert boot["data"] == {"run_id": run_id, "can_run": can_run}
    assert '<a href="/ui/playbook-runs" class="on">' in html


def test_a_run_page_needs_a_known_run_and_a_login(api: Api) -> None:
    viewer = api.as_role(Role.VIEWER)
    assert api.client.get("/ui/playbook-runs/999", headers=viewer).status_code == 404
    assert api.client.get("/ui/playbook-runs/x%3Cscript", headers=viewer).status_code == 422
    anonymous = api.client.get("/ui/playbook-runs", follow_redirects=False)
    assert anonymous.status_code in (303, 307, 401)


def test_the_runs_list_counts_each_runs_outlets_by_state(api: Api) -> None:
    first = _run(api, {"o-1": ("changed", 1), "o-2": ("changed", 2), "o-3": ("failed", 0),
                       "o-4": ("held", 0)})  # fmt: skip
    second = _run(api, {"o-1": ("ok", 0)})
    runs = api.client.get("/api/v1/playbook-runs", headers=api.as_role(Role.VIEWER)).json()
    assert [(r["id"], r["host_counts"]) for r in runs] == [
        (second, {"ok": 1}),
        (first, {"changed": 2, "failed": 1, "held": 1}),
    ]


def test_the_outlet_page_carries_its_runs_with_its_own_result(api: Api) -> None:
    profile = {"outlet_id": "o-2", "region_code": "410402", "opening_hours": "24h"}
    answer = api.client.put(
        "/api/v1/outlet-profiles", json=[profile], headers=api.as_role(Role.OPERATOR)
    )
    assert answer.status_code == 200, answer.text
    first = _run(api, {"o-1": ("changed", 1), "o-2": ("failed", 0)})
    _run(api, {"o-1": ("ok", 0)})  # not on o-2
    third = _run(api, {"o-2": ("held", 0)})
    _, boot = _page(api, "/ui/outlets/o-2", Role.VIEWER)
    runs = boot["data"]["playbook_runs"]
    assert [(r["id"], r["result"]["status"]) for r in runs] == [(third, "held"), (first, "failed")]
    assert runs[0]["result"]["held_reason"] == "open now (opening hours)"


def test_playbooks_js_is_served(api: Api) -> None:
    answer = api.client.get("/ui/static/playbooks.js")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/javascript")
    assert "window.govedgePlaybooks" in answer.text
