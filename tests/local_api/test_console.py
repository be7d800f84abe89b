"""The counter console at ``/console/``: served without a token, everything it does needs one.

A clerk drives it in a real Chromium through a counter flow against the simulated
agent, the fleet server and the recording upstream: call the ticket, read the ID card,
capture the papers, file the case, see the 办件编号 arrive, ask for a rating (a walk-away
without and with the region's default rating) and see the citizen's stars.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import expect

from govedge_testbed import Mosquitto
from govedge_testbed.upstream import Upstream
from govedge_wire.config import EvaluationConfig
from govedge_wire.pii import mask_id_number, mask_name
from tests.local_api.browser_outlet import (
    CLERK,
    WINDOW,
    RunningOutlet,
    chromium,
    with_outlet,
)
from tests.local_api.harness import outlet as harness_outlet
from tests.server.helpers import FleetServer
from tests.server.txkit import delivering_fleet, upstream

__all__ = ["delivering_fleet", "upstream"]  # fixtures used by the tests below


def _open_console(browser: Any, running: RunningOutlet, token: str) -> Any:
    """The console as a clerk first opens it: the setup form, filled in and saved."""
    page = browser.new_context(locale="zh-CN").new_page()
    page.goto(f"{running.base_url}/console/?window={WINDOW}")
    expect(page.locator("#setup")).to_be_visible()
    # The page tells the technician which origin to register.
    expect(page.locator("#setup-command")).to_contain_text(f"--origin {running.base_url}")
    page.fill("#token", token)
    page.fill("#clerk", CLERK)
    page.click("#setup-form button[type=submit]")
    expect(page.locator("#desk")).to_be_visible()
    return page


def test_the_page_is_public_and_the_api_behind_it_is_not(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness_outlet(tmp_path) as o:
            page = await o.client.get("/console/")
            assert page.status_code == httpx.codes.OK
            assert "窗口柜台" in page.text
            policy = page.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in policy
            assert "script-src 'self'" in policy
            script = await o.client.get("/console/console.js")
            assert 'from "/client/govedge-local.js"' in script.text  # built on the client only
            assert (await o.client.get("/console")).headers["location"] == "/console/"
            again = await o.client.get("/console/", headers={"If-None-Match": page.headers["etag"]})
            assert again.status_code == httpx.codes.NOT_MODIFIED
            # The page being public opens nothing: the API still wants a token, and
            # nothing else under /console/ is served without one.
            assert (await o.client.get("/v1/queue")).status_code == httpx.codes.UNAUTHORIZED
            assert (await o.client.post("/console/")).status_code == httpx.codes.UNAUTHORIZED
            assert (await o.client.get("/console/x.js")).status_code == httpx.codes.UNAUTHORIZED

    asyncio.run(scenario())


def test_a_clerk_runs_a_counter_flow_on_the_console(
    broker: Mosquitto,
    delivering_fleet: FleetServer,
    upstream: Upstream,
    outlet_id: str,
    tmp_path: Path,
) -> None:
    shown_case, shown, body_text = with_outlet(broker, outlet_id, tmp_path / "agent", _counter_flow)
    # Upstream holds the case the console filed, once, and its 办件编号 is the one shown.
    [key] = upstream.by_target["zhoushan"]
    sent = upstream.accepted[key]
    assert upstream.accepted_count[key] == 1
    assert sent["case_number"] == shown_case
    applicant = sent["body"]["body"]["applicant"]
    assert [m["name"] for m in sent["body"]["materials"]] == ["身份证复印件"]
    assert sent["files"][0]["data"][:2] == b"\xff\xd8"  # the capture, a JPEG
    # The pad asked the citizen about that case; the screen showed the card masked only.
    assert shown["case_no"] == shown_case
    assert mask_id_number(applicant["id_number"]) in body_text
    assert mask_name(applicant["name"]) in body_text
    assert applicant["id_number"] not in body_text
    assert applicant["name"] not in body_text


DEFAULT_IN_10_MINUTES = EvaluationConfig(
    level_coding="zhejiang", default_channels=("7",), default_stars=5, default_after_s=600
)


def _counter_flow(outlet: RunningOutlet) -> tuple[str, dict[str, Any], str]:
    token = outlet.register("counter-console", outlet.base_url)
    auth = {"Authorization": f"Bearer {token}"}
    ticket = httpx.post(
        f"{outlet.base_url}/v1/tickets", json={"business_type": "general"}, headers=auth,
        timeout=30,
    ).json()  # fmt: skip
    with chromium() as browser:
        page = _open_console(browser, outlet, token)
        expect(page.locator("#stream")).to_have_text("已连接")
        expect(page.locator("#window-label")).to_contain_text(f"{WINDOW} 号窗口")
        page.click("#call")
        expect(page.locator("#current")).to_have_text(ticket["number"])
        expect(page.locator("#announcement")).to_contain_text(ticket["number"])
        led = outlet.simulation.simulator("led_screen")
        assert led is not None
        assert led.text(1, 1) == f"请{ticket['number']}号到{WINDOW}号窗口"
        page.click("#recall")
        # The stream is live: the queue events reach the fleet server and are acked.
        expect(page.locator("#events")).to_contain_text("已送达平台接入端")
        expect(page.locator("#current")).to_have_text(ticket["number"])
        page.click("#read-card")
        expect(page.locator("#card-number")).to_have_text(re.compile(r"^\d{4}\*{10}[\dX]{4}$"))
        page.click("#capture")
        expect(page.locator("#doc-image")).to_be_visible()
        expect(page.locator("#doc-info")).to_contain_text("KiB")
        page.click("#submit")
        case_number = page.locator("#case-number")
        expect(case_number).not_to_have_text("—", timeout=60_000)
        expect(page.locator("#case-status")).to_have_text("已受理")
        shown_case = case_number.inner_text()
        # The first citizen walks away from the pad; the clerk asks again and gets stars.
        page.click("#rate")
        expect(page.locator("#rating")).to_contain_text("评价器")
        outlet.citizen_walks_away()
        expect(page.locator("#rating")).to_contain_text("评价超时")
        # Where the region's profile gives a default rating, the clerk is told it will be
        # recorded, not that the rating timed out.
        outlet.set_evaluation_profile(DEFAULT_IN_10_MINUTES)
        page.click("#rate")
        expect(page.locator("#rating")).to_contain_text("评价器")
        outlet.citizen_walks_away()
        expect(page.locator("#rating")).to_have_text(
            re.compile(r"^未评价，将于 \d\d:\d\d 记默认好评（5星）$")  # noqa: RUF001 - Chinese
        )
        page.click("#rate")
        expect(page.locator("#rating")).to_contain_text("评价器")
        shown = outlet.citizen_rates(5)
        expect(page.locator("#rating")).to_contain_text("★★★★★", timeout=30_000)
        page.click("#finish")
        expect(page.locator("#current")).to_have_text("—")
        body_text = page.locator("body").inner_text()
    return shown_case, shown, body_text


def test_a_console_whose_origin_is_not_registered_says_what_to_do(
    broker: Mosquitto, outlet_id: str, tmp_path: Path
) -> None:
    with_outlet(broker, outlet_id, tmp_path / "agent", _unregistered_console)


def _unregistered_console(outlet: RunningOutlet) -> None:
    token = outlet.register("counter-console")  # no --origin: browsers are refused
    with chromium() as browser:
        page = _open_console(browser, outlet, token)
        expect(page.locator("#stream")).to_have_text("重新连接中…")  # the handshake is refused
        page.click("#call")
        expect(page.locator("#setup")).to_be_visible()
        expect(page.locator("#error")).to_contain_text(
            f"origin {outlet.base_url} is not allowed for this app"
        )
        expect(page.locator("#error")).to_contain_text("edge-agent apps add counter-console")
