"""The operators' pages' scripts and style: each page names only the scripts it uses,
each by a URL carrying its content's hash, which the browser may keep for a year (and
its compiled code with it); the same file asked without that version is revalidated
every time, so an old page or a typed URL never pins an old script."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet_server.security import Role
from tests.security.api_harness import Api, running_api

STATIC = Path(__file__).resolve().parents[2] / "fleet_server" / "web" / "static"
_SCRIPT = re.compile(r'<script src="/ui/static/([a-z]+\.js)\?v=([0-9a-f]{12})"></script>')


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path, mqtt_url="mqtt://127.0.0.1:1") as harness:
        yield harness


def _scripts(api: Api, path: str) -> dict[str, str]:
    answer = api.client.get(path, headers=api.as_role(Role.ADMIN))
    assert answer.status_code == 200, answer.text
    return dict(_SCRIPT.findall(answer.text))


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/ui/overview", {"app.js"}),
        ("/ui/map", {"app.js"}),
        ("/ui/outlets", {"registry.js", "app.js"}),
        ("/ui/alerts", {"ops.js", "app.js"}),
        ("/ui/config", {"config.js", "app.js"}),
        ("/ui/campaigns", {"campaigns.js", "app.js"}),
        ("/ui/playbook-runs", {"playbooks.js", "app.js"}),
    ],
)
def test_a_page_names_only_its_scripts_each_with_its_content_hash(
    api: Api, path: str, expected: set[str]
) -> None:
    scripts = _scripts(api, path)
    assert set(scripts) == expected
    for name, version in scripts.items():
        assert version == hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]


def test_the_versioned_url_is_kept_for_a_year_any_other_is_revalidated(api: Api) -> None:
    version = _scripts(api, "/ui/overview")["app.js"]
    kept = api.client.get(f"/ui/static/app.js?v={version}")
    assert kept.status_code == 200
    assert kept.headers["cache-control"] == "public, max-age=31536000, immutable"
    for stale in ("/ui/static/app.js", "/ui/static/app.js?v=000000000000"):
        answer = api.client.get(stale)
        assert answer.status_code == 200
        assert answer.headers["cache-control"] == "no-cache"
        assert answer.content == kept.content
    # The login form's style is versioned too (it is shown before any session).
    form = api.client.get("/ui/login")
    assert re.search(r'href="/ui/static/app\.css\?v=[0-9a-f]{12}"', form.text)
