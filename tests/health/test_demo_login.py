"""A new user's first minutes: run the demo, open the address it prints in Chromium, log
in with the user name and password it printed, and land on the overview; then open the
first outlet's counter console it prints and enter the token it printed for it."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from govedge_testbed.mosquitto import find_mosquitto
from govedge_testbed.ports import free_port, wait_for_port
from govedge_testbed.services import ServiceUnavailable
from tests.conftest import missing
from tests.health.conftest import login_form


def _printed(proc: subprocess.Popen[str], *, until: str, deadline: float) -> list[str]:
    """The demo's stdout lines up to the one containing ``until``."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        if until in line:
            return seen
    raise AssertionError(f"the demo did not print {until!r}: {seen}")


@pytest.mark.timeout(300)  # a whole demo: server, agents, two browser pages
def test_the_login_the_demo_prints_opens_the_overview(tmp_path: Path, browser: Any) -> None:
    try:
        find_mosquitto()
    except ServiceUnavailable as exc:
        missing(str(exc))
    demo = subprocess.Popen(
        [str(Path(sys.executable).parent / "govedge-demo"), "--outlets", "1",
         "--port", str(free_port()), "--data-dir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        out = "\n".join(_printed(demo, until="Ctrl-C stops", deadline=time.monotonic() + 120))
        url = re.search(r"operator pages: (http://127\.0\.0\.1:\d+/)$", out, re.M)
        name = re.search(r"user name: (\S+)$", out, re.M)
        password = re.search(r"password:\s+(\S+)", out)
        assert url, out
        assert name, out
        assert password, out
        assert name.group(1).startswith("demo-admin-")

        page = browser.new_page()
        page.goto(url.group(1))  # the address as printed: / leads to the login form
        page.wait_for_url("**/ui/login?next=%2Fui%2Foverview")
        login_form(page, name.group(1), "not the printed one")
        assert "wrong user name or password" in page.locator("#login-error").inner_text()
        login_form(page, name.group(1), password.group(1))
        page.wait_for_url("**/ui/overview")
        page.wait_for_selector("#live:not(.off)")
        assert page.locator("header h1").inner_text() == "政务服务网点运维监控"
        page.screenshot(path=str(tmp_path / "demo-first-login.png"), full_page=True)
        page.close()

        # The first outlet's hall display, as printed: served by its real agent, live.
        display = re.search(
            r"叫号大屏 \(display\): (http://127\.0\.0\.1:(\d+)/hall/display#token=\S+)$", out, re.M
        )
        assert display, out
        # The demo prints before its agents are up; the page is there once the agent is.
        assert wait_for_port(int(display.group(2)), timeout=60)
        hall = browser.new_page()
        hall.goto(display.group(1))
        hall.wait_for_selector("#link[data-state='open']")
        hall.wait_for_selector("#windows [data-window='1']")  # the simulated outlet's windows
        assert hall.locator("#fault").is_hidden()
        hall.close()

        # The first outlet's counter console, with the token the demo printed for it.
        console = re.search(r"counter console of \S+: (\S+)$", out, re.M)
        console_token = re.search(r"its app token \(enter it once\): (gva_\S+)$", out, re.M)
        assert console, out
        assert console_token, out
        clerk = browser.new_page()
        clerk.goto(console.group(1))
        clerk.fill("#token", console_token.group(1))
        clerk.click("#setup-form button[type=submit]")
        expect(clerk.locator("#stream")).to_have_text("已连接", timeout=20_000)
        expect(clerk.locator("#window-label")).to_have_text("1 号窗口 · 工号 demo")
        expect(clerk.locator("#devices")).to_contain_text("就绪", timeout=20_000)
        clerk.close()
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(timeout=60)
        if demo.stdout is not None:
            demo.stdout.close()
        assert code == 0
