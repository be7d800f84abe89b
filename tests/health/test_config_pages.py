"""The config pages over plain HTTP (auth on, bearer tokens): they render in zh and en,
carry the user's right to write, and a hostile comment, config string or scope text
stays inside the boot JSON as data — it can neither end the <script> element nor add
one. How app.js shows those strings is tested in a browser (test_config_ui.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet_server.security import Role
from tests.security.api_harness import Api, running_api

OUTLET = "hz-pages-01"
EVIL_COMMENT = "</script><script>alert('comment')</script><!--"
EVIL_TEXT = "请{ticket}号</script><img src=x onerror=alert('value')>"
EVIL_SCOPE = "region:33</script><script>alert('scope')</script>"
_BOOT = re.compile(r'<script id="boot" type="application/json">(.*?)</script>', re.S)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path, mqtt_url="mqtt://127.0.0.1:1") as harness:
        operator = harness.as_role(Role.OPERATOR)
        profile = {"outlet_id": OUTLET, "name": "拱墅区便民服务中心", "kind": "street_centre",
                   "region_code": "330105", "opening_hours": "24h"}  # fmt: skip
        put = harness.client.put("/api/v1/outlet-profiles", json=[profile], headers=operator)
        assert put.status_code == 200, put.text
        for scope, document in (
            ("global", {"log_level": "INFO", "queue": {"announcement": EVIL_TEXT}}),
            ("region:3301", {"log_level": "WARNING"}),
        ):
            answer = harness.client.put(
                f"/api/v1/config/{scope}", json=document, headers=operator,
                params={"comment": EVIL_COMMENT},
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
        yield harness


def _page(api: Api, path: str, role: Role, **params: str) -> tuple[str, dict[str, Any]]:
    """The page's HTML and its boot data, checked to be the page's only inline script."""
    answer = api.client.get(path, params=params, headers=api.as_role(role))
    assert answer.status_code == 200, answer.text
    html = answer.text
    # Every script element is the boot JSON or one of the bundled scripts, no other.
    bundled = re.findall(r'<script src="/ui/static/[a-z]+\.js\?v=[0-9a-f]{12}"></script>', html)
    assert len(bundled) >= 2, html  # config.js and app.js at least
    assert html.count("<script") == 1 + len(bundled), html
    for raw in (EVIL_COMMENT, EVIL_TEXT, "<script>alert", "<img", "<!--"):
        assert raw not in html
    found = _BOOT.search(html)
    assert found is not None
    boot: dict[str, Any] = json.loads(found.group(1))
    return html, boot


@pytest.mark.parametrize(
    ("lang", "html_lang", "nav"), [("zh", "zh-CN", "配置管理"), ("en", "en", "Configuration")]
)
def test_config_page_renders_in_both_languages_with_hostile_text_as_data(
    api: Api, lang: str, html_lang: str, nav: str
) -> None:
    html, boot = _page(api, "/ui/config", Role.OPERATOR, lang=lang, scope=EVIL_SCOPE)
    assert f'<html lang="{html_lang}">' in html
    assert f'<a href="/ui/config" class="on">{nav}</a>' in html
    assert boot["page"] == "config"
    assert boot["t"]["nav_config"] == nav
    data = boot["data"]
    assert data["scope"] == EVIL_SCOPE  # handed to app.js as text; the API refuses it
    assert data["can_write"] is True
    assert {s["scope"]: (s["version"], s["comment"]) for s in data["scopes"]} == {
        "global": (1, EVIL_COMMENT),
        "region:3301": (1, EVIL_COMMENT),
    }
    assert [row["outlet_id"] for row in data["drift"]] == [OUTLET]
    assert data["drift"][0]["status"] == "unknown"


def test_a_viewer_gets_the_page_without_the_right_to_write(api: Api) -> None:
    _, boot = _page(api, "/ui/config", Role.VIEWER)
    assert boot["data"]["can_write"] is False
    assert boot["data"]["user"] == "u-viewer"
    _, technician = _page(api, "/ui/config", Role.TECHNICIAN)
    assert technician["data"]["can_write"] is False  # technicians read config only


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_outlet_page_carries_the_config_view_the_api_answers(api: Api, lang: str) -> None:
    _, boot = _page(api, f"/ui/outlets/{OUTLET}", Role.VIEWER, lang=lang)
    view = boot["data"]["config"]
    from_api = api.client.get(f"/api/v1/outlets/{OUTLET}/config", headers=api.as_role(Role.VIEWER))
    assert view == from_api.json()
    assert view["effective"]["config"] == {
        "log_level": "WARNING",
        "queue": {"announcement": EVIL_TEXT},
    }
    assert view["provenance"] == {"log_level": "region:3301", "queue.announcement": "global"}
    assert view["status"] == "unknown"


def test_the_config_script_is_served(api: Api) -> None:
    answer = api.client.get("/ui/static/config.js", headers=api.as_role(Role.VIEWER))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/javascript")
    assert "window.govedgeConfig" in answer.text
