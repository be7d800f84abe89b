"""A real headless Chromium (Debian's, driven by Playwright) for the web UI tests."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip  # noqa: E501


@pytest.fixture(scope="module")
def module_chromium() -> Iterator[Any]:
    """One Chromium for a module's tests: starting Playwright's driver and the browser
    cost about 2 s (1.5 CPU s) per test otherwise."""
    if not Path(CHROMIUM).exists():
        missing("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def browser(module_chromium: Any) -> Iterator[Any]:
    """The module's Chromium, with no context open: a test starts as with a fresh browser
    (contexts share no cookies or storage), and the contexts it opened are closed after
    it, so no page of a server that has stopped keeps polling it."""
    assert module_chromium.is_connected(), "the module's Chromium is gone (crashed?)"
    for context in list(module_chromium.contexts):
        context.close()
    yield module_chromium
    for context in list(module_chromium.contexts):
        context.close()


# Where browser tests keep what a person looks at after a run (screenshots): under the
# repository unless GOVEDGE_TEST_ARTIFACTS names another directory (scripts/test says
# where; CI keeps the directory). Not under pytest's temporary directories, which are
# pruned after a few runs.
ARTIFACTS_ENV = "GOVEDGE_TEST_ARTIFACTS"
REPO = Path(__file__).resolve().parents[2]


def screenshots_dir(name: str) -> Path:
    """``<artifacts>/screenshots/<name>``, created if missing (a rerun overwrites)."""
    root = Path(os.environ.get(ARTIFACTS_ENV) or REPO / "test-artifacts")
    folder = root / "screenshots" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# Storage states (the session cookie) of users already logged in, per server and name:
# a module's tests log in through the form once and reuse the session afterwards.
_STATES: dict[tuple[str, str], Path] = {}
PASSWORD = "browser-test password 1"


def add_user(
    database_url: str, name: str, role: str, password: str = PASSWORD, regions: tuple[str, ...] = ()
) -> None:
    """``fleet-server users add NAME --role ROLE [--region R ...] --password-stdin``: the
    real CLI's code, run in this process (a new interpreter per user cost ~2 CPU s of
    imports; the command as a process is tested in tests/security/test_password_cli.py)."""
    from click.testing import CliRunner

    from fleet_server.cli import main

    scope = [arg for region in regions for arg in ("--region", region)]
    result = CliRunner().invoke(
        main,
        ["users", "add", name, "--role", role, *scope, "--password-stdin",
         "--database-url", database_url],
        input=password + "\n",
    )  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)


def login_form(page: Any, name: str, password: str = PASSWORD) -> None:
    """Type ``name`` and ``password`` into the login form ``page`` shows and submit it."""
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def logged_in_context(
    browser: Any, fleet: Any, name: str, role: str, *, regions: tuple[str, ...] = (),
    **options: Any,
) -> Any:  # fmt: skip
    """A browser context with a session for ``name`` (created with ``role`` and the
    region scope ``regions`` the first time): logged in through the login page once, its
    storage state reused after."""
    key = (fleet.url, name)
    state = _STATES.get(key)
    if state is None or not state.exists():
        add_user(fleet.database_url, name, role, regions=regions)
        context = browser.new_context(**options)
        page = context.new_page()
        page.goto(f"{fleet.url}/")
        page.wait_for_url("**/ui/login?next=*")
        login_form(page, name)
        page.wait_for_url("**/ui/overview")
        state = Path(tempfile.mkdtemp(prefix="govedge-ui-")) / f"{name}.json"
        context.storage_state(path=str(state))
        context.close()
        _STATES[key] = state
    return browser.new_context(storage_state=str(state), **options)


@pytest.fixture
def seeded_fleet(broker: Any, tmp_path: Path) -> Iterator[Any]:
    """A fleet server for tests that write rows straight into its database: its alert
    engine evaluates hourly, so it leaves the seeded alerts as they were written."""
    from tests.server.helpers import FleetServer

    server = FleetServer(
        mqtt_url=broker.url, database_url=f"sqlite:///{tmp_path / 'f.db'}", workdir=tmp_path,
        GOVEDGE_PKI_DIR=str(tmp_path / "pki"), GOVEDGE_ALERT_EVAL_INTERVAL_S="3600",
    )  # fmt: skip
    server.start()
    try:
        yield server
    finally:
        assert server.stop() == 0, server.stderr()
