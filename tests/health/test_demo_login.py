"""A new user's first minutes: run the demo, open the address it prints in Chromium, log
in with the user name and password it printed, and land on the overview; then open the
first outlet's hall display and counter console at the addresses the demo printed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from fleet_server.web.i18n import STRINGS
from govedge_testbed.ports import wait_for_port
from tests.health.conftest import login_form
from tests.health.demo_run import running_demo


@pytest.mark.timeout(300)  # a whole demo: server, agents, three browser pages
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
        assert STRINGS["login_wrong"]["zh"] in page.locator("#login-error").inner_text()
        login_form(page, name, password)
        page.wait_for_url("**/ui/overview")
        page.wait_for_selector("#live:not(.off)")
        assert page.locator("header h1").inner_text() == "政务服务网点运维监控"
        page.screenshot(path=str(tmp_path / "demo-first-login.png"), full_page=True)
        page.close()

        # The first outlet's hall display, as printed: served by its real agent, live.
        display = printed.value(
            r"叫号大屏 \(display\): (http://127\.0\.0\.1:\d+/hall/display#token=\S+)$"
        )
        port = re.search(r":(\d+)/", display)
        assert port is not None
        assert wait_for_port(int(port.group(1)), timeout=60)
        hall = browser.new_page()
        hall.goto(display)
        hall.wait_for_selector("#link[data-state='open']")
        hall.wait_for_selector("#windows [data-window='1']")  # the simulated outlet's windows
        assert hall.locator("#fault").is_hidden()
        hall.close()

        # The first outlet's counter console, with the token the demo printed for it.
        console = printed.value(r"counter console of \S+: (\S+)$")
        console_token = printed.value(r"its app token \(enter it once\): (gva_\S+)$")
        clerk = browser.new_page()
        clerk.goto(console)
        clerk.fill("#token", console_token)
        clerk.click("#setup-form button[type=submit]")
        expect(clerk.locator("#stream")).to_have_text("已连接", timeout=20_000)
        expect(clerk.locator("#window-label")).to_have_text("1 号窗口 · 工号 demo")
        expect(clerk.locator("#devices")).to_contain_text("就绪", timeout=20_000)
        clerk.close()
