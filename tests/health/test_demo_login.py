"""A new user's first minutes: run the demo, open the address it prints in Chromium, log
in with the user name and password it printed, and land on the overview."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.health.conftest import login_form
from tests.health.demo_run import running_demo


def test_the_login_the_demo_prints_opens_the_overview(tmp_path: Path, browser: Any) -> None:
    with running_demo(tmp_path / "demo", outlets=1) as printed:
        url = printed.value(r"operator pages: (http://127\.0\.0\.1:\d+/)$")
        name = printed.value(r"user name: (\S+)$")
        password = printed.value(r"password:\s+(\S+)")
        assert name.startswith("demo-admin-")

        page = browser.new_page()
        page.goto(url)  # the address as printed: / leads to the login form
        page.wait_for_url("**/ui/login?next=%2Fui%2Foverview")
        login_form(page, name, "not the printed one")
        assert "wrong user name or password" in page.locator("#login-error").inner_text()
        login_form(page, name, password)
        page.wait_for_url("**/ui/overview")
        page.wait_for_selector("#live:not(.off)")
        assert page.locator("header h1").inner_text() == "政务服务网点运维监控"
        page.screenshot(path=str(tmp_path / "demo-first-login.png"), full_page=True)
        page.close()
