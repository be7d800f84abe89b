"""The campaigns pages over plain HTTP (auth on, bearer tokens): they render in zh and
en with their navigation link, serve campaigns.js, and carry whether the user may
pause, resume and abort (operators yes, viewers no). The campaign data itself is read
by campaigns.js from the campaign API."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet_server.security import Role
from tests.security.api_harness import Api, running_api

_BOOT = re.compile(r'<script id="boot" type="application/json">(.*?)</script>', re.S)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path, mqtt_url="mqtt://127.0.0.1:1") as harness:
        yield harness


def _page(api: Api, path: str, role: Role, **params: str) -> tuple[str, dict[str, Any]]:
    answer = api.client.get(path, params=params, headers=api.as_role(role))
    assert answer.status_code == 200, answer.text
    found = _BOOT.search(answer.text)
    assert found is not None
    boot: dict[str, Any] = json.loads(found.group(1))
    return answer.text, boot


@pytest.mark.parametrize(
    ("lang", "html_lang", "nav"), [("zh", "zh-CN", "升级任务"), ("en", "en", "Updates")]
)
def test_campaign_list_renders_in_both_languages_with_its_nav_link(
    api: Api, lang: str, html_lang: str, nav: str
) -> None:
    html, boot = _page(api, "/ui/campaigns", Role.VIEWER, lang=lang)
    assert f'<html lang="{html_lang}">' in html
    assert f'<a href="/ui/campaigns" class="on">{nav}</a>' in html
    assert re.search(r'<script src="/ui/static/campaigns\.js\?v=[0-9a-f]{12}"></script>', html)
    assert boot["page"] == "campaigns"
    assert boot["data"] == {"campaign_id": None, "can_write": False}
    assert boot["t"]["cp_pause"] == ("暂停" if lang == "zh" else "Pause")


@pytest.mark.parametrize(("role", "can_write"), [(Role.OPERATOR, True), (Role.VIEWER, False)])
def test_campaign_page_says_who_may_steer_it(api: Api, role: Role, can_write: bool) -> None:
    html, boot = _page(api, "/ui/campaigns/7", role)
    assert boot["page"] == "campaign"
    assert boot["data"] == {"campaign_id": 7, "can_write": can_write}
    assert '<a href="/ui/campaigns" class="on">' in html


def test_campaign_page_needs_a_number_and_a_login(api: Api) -> None:
    bad = api.client.get("/ui/campaigns/x%3Cscript", headers=api.as_role(Role.VIEWER))
    assert bad.status_code == 422
    anonymous = api.client.get("/ui/campaigns", follow_redirects=False)
    assert anonymous.status_code in (303, 307, 401)


def test_campaigns_js_is_served(api: Api) -> None:
    answer = api.client.get("/ui/static/campaigns.js", headers=api.as_role(Role.VIEWER))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/javascript")
    assert "window.govedgeCampaigns" in answer.text
