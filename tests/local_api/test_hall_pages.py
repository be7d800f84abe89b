"""The hall display and the ticket kiosk in a real Chromium against the real local API.

The pages are served by the agent and call it as a ``display`` / ``kiosk`` app (token in
the URL fragment, origin = the agent's own). The kiosk's ticket reaches the printer
simulator, whose ESC/POS parser decodes the text and the QR code's data from the bytes;
a clerk's call shows on the display, which fetches and plays each announcement in
order, one at a time. Chromium runs with the autoplay flag docs/hall-pages.md
prescribes for the display PC.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import expect

from edge_agent.local_api import LocalApiOptions
from tests.conftest import missing
from tests.health.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.local_api.harness import Outlet, outlet

QR_TEMPLATE = "https://hcp.example.gov.cn/evaluate?case={case_number}&outlet={outlet}"
KIOSK_FLAGS = ["--autoplay-policy=no-user-gesture-required"]


def today() -> date:
    """The outlet's day now (asked when used: a run may pass Shanghai's midnight)."""
    return datetime.now(ZoneInfo("Asia/Shanghai")).date()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A real headless Chromium (Playwright's async API: the outlet runs in this loop)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *KIOSK_FLAGS]
        )
        try:
            yield browser
        finally:
            await browser.close()


def screen_url(o: Outlet, page: str, role: str) -> str:
    """Register a hall screen as the operator would; its page address with the token."""
    origin = f"http://127.0.0.1:{o.port}"
    _, token = o.apps.add(f"hall-{page}", origins=[origin], role=role)
    return f"{origin}/hall/{page}#token={token}"


def run(tmp_path: Path, scenario: Any, *, options: LocalApiOptions | None = None) -> None:
    if not Path(CHROMIUM).exists():
        missing("Debian's chromium is not installed (apt-get install chromium)")

    async def main() -> None:
        async with outlet(tmp_path, options=options) as o, chromium() as browser:
            page = await browser.new_page()
            try:
                async with asyncio.timeout(90):
                    await scenario(o, page)
            finally:
                await page.close()

    asyncio.run(main())


def test_kiosk_prints_a_ticket_with_its_evaluation_qr_code(tmp_path: Path) -> None:
    async def scenario(o: Outlet, page: Any) -> None:
        await page.goto(screen_url(o, "kiosk", "kiosk"))
        assert await page.title() == "自助取号"
        await expect(page.get_by_role("button", name="社保医保")).to_be_visible()
        assert "#token" not in page.url  # read, then out of sight
        await page.reload()  # as after a crash of the page: the tab still has its token
        before = today()
        await page.get_by_role("button", name="社保医保").click()
        await expect(page.locator("#ticket-number")).to_have_text("A001")
        issued_on = {before, today()}  # the day the ticket was issued, midnight or not
        assert "请取走号票" in await page.inner_text("#ticket-note")

        printed = "\n".join(o.printer.tickets[-1])
        assert "A001" in printed
        assert "社保医保" in printed
        assert "前面还有 0 人等候" in printed
        assert len(o.printer.qr_codes) == 1
        link = urlsplit(o.printer.qr_codes[0])
        assert link.netloc == "hcp.example.gov.cn"
        fields = parse_qs(link.query)
        assert fields["case"][0] in {f"T{d.strftime('%Y%m%d')}-A001" for d in issued_on}
        assert len(fields["case"]) == 1
        assert fields["outlet"] == [o.runtime.outlet_id]

    run(tmp_path, scenario, options=LocalApiOptions(evaluation_qr_url=QR_TEMPLATE))


def test_kiosk_checks_in_an_appointment_and_explains_each_refusal(tmp_path: Path) -> None:
    async def scenario(o: Outlet, page: Any) -> None:
        day = today().isoformat()
        other = (today() + timedelta(days=366)).isoformat()
        bookings = [
            {"reference": "2024-0007", "day": day, "business_type": "tax"},
            {"reference": "2024-0008", "day": other, "business_type": "tax"},
        ]
        loaded = await o.client.post(
            "/v1/appointments", headers=o.auth, json={"appointments": bookings}
        )
        assert loaded.status_code == 200, loaded.text
        await page.goto(screen_url(o, "kiosk", "kiosk"))

        async def enter(code: str) -> None:
            await page.get_by_role("button", name="预约签到取号").click()
            await page.fill("#reference", code)
            await page.press("#reference", "Enter")  # as a scanner ends its code

        await enter("9999-0000")
        error = page.locator("#checkin-error")
        await error.wait_for(state="visible")
        assert "未找到该预约" in await error.inner_text()
        await page.click("#appointment .back")

        await enter("2024-0008")
        await expect(error).to_contain_text("不是今天")
        await page.click("#appointment .back")
        assert o.printer.tickets == []  # nothing printed for a refusal

        # The happy path, typed on the on-screen keys.
        await page.get_by_role("button", name="预约签到取号").click()
        for key in "2024-0007":
            await page.click(f"#keys [data-key='{key}']")
        await page.click("#checkin")
        await expect(page.locator("#ticket-number")).to_have_text("B001")
        assert "（预约）" in await page.inner_text("#ticket-service")  # noqa: RUF001
        assert "B001" in "\n".join(o.printer.tickets[-1])

        await page.click("#ticket .back")
        await enter("2024-0007")
        await expect(error).to_contain_text("已签到")
        assert len(o.printer.tickets) == 1

    run(tmp_path, scenario)


@pytest.mark.usefixtures("espeak_ng")  # fails under CI=true if missing
def test_display_shows_calls_and_plays_their_announcements_in_order(tmp_path: Path) -> None:
    async def scenario(o: Outlet, page: Any) -> None:
        for business in ("social", "social", "tax"):
            issued = await o.client.post(
                "/v1/tickets", headers=o.auth, json={"business_type": business}
            )
            assert issued.status_code == 201
        fetched: list[tuple[str, str]] = []  # (announcement path, announcements spoken then)

        async def watch(route: Any) -> None:
            spoken = await page.evaluate("document.body.dataset.spoken")
            fetched.append((urlsplit(route.request.url).path, spoken))
            await route.continue_()

        await page.route("**/v1/announcements/*.wav", watch)
        await page.goto(screen_url(o, "display", "display"))
        await expect(page.locator("#link")).to_have_attribute("data-state", "open")
        social = page.locator("#waiting [data-business='social'] .count")
        await expect(social).to_have_text("2")

        first = (await o.client.post("/v1/windows/3/call", headers=o.auth)).json()
        second = (await o.client.post("/v1/windows/5/call", headers=o.auth)).json()
        assert first["ticket"]["number"] == "A001"
        assert second["ticket"]["number"] == "A002"

        await expect(page.locator("[data-window='3'] .ticket")).to_have_text("A001")
        await expect(page.locator("[data-window='5'] .ticket")).to_have_text("A002")
        await expect(social).to_have_text("0")
        recent = await page.locator("#recent li").all_inner_texts()
        assert recent == ["A002 → 5号窗口", "A001 → 3号窗口"]

        await expect(page.locator("body")).to_have_attribute("data-spoken", "2", timeout=60_000)
        assert await page.evaluate("document.body.dataset.unspoken") is None  # both played
        # In call order, and the second fetched only once the first had been spoken.
        assert fetched == [
            (first["announcement"]["audio_url"], "0"),
            (second["announcement"]["audio_url"], "1"),
        ]

        skipped = await o.client.post("/v1/windows/3/skip", headers=o.auth)  # 弃号
        assert skipped.status_code == 200
        await expect(page.locator("[data-window='3'] .ticket")).to_have_text("—")
        await expect(page.locator("[data-window='5'] .ticket")).to_have_text("A002")

    run(tmp_path, scenario)


def test_display_reconnects_after_the_agent_restarts_and_reads_the_queue_again(
    tmp_path: Path,
) -> None:
    """The agent's server closes (as in a restart) and comes back on its port: the display
    says it is reconnecting, then shows what changed meanwhile and follows calls again."""

    async def scenario(o: Outlet, page: Any) -> None:
        for _ in range(2):
            issued = await o.client.post(
                "/v1/tickets", headers=o.auth, json={"business_type": "social"}
            )
            assert issued.status_code == 201
        await page.goto(screen_url(o, "display", "display"))
        link = page.locator("#link")
        window_3 = page.locator("[data-window='3'] .ticket")
        social = page.locator("#waiting [data-business='social'] .count")
        await expect(link).to_have_attribute("data-state", "open")
        await expect(window_3).to_have_text("—")
        await expect(social).to_have_text("2")

        await o.stop_api()
        await expect(link).to_have_attribute("data-state", "reconnecting")
        await expect(link).to_have_text("正在重新连接…")
        # Window 3 calls while the display is cut off (the queue itself runs on, as a
        # caller keypad's key reaches it): no event can tell the display.
        missed = await o.runtime.queue.call("3")
        assert missed.ticket is not None
        assert missed.ticket.number == "A001"

        await o.start_api()
        # The client's delay between attempts has grown while the agent was away.
        await expect(link).to_have_attribute("data-state", "open", timeout=30_000)
        await expect(link).to_have_text("已连接")
        await expect(window_3).to_have_text("A001")  # read again, not told
        await expect(social).to_have_text("1")

        called = await o.client.post("/v1/windows/5/call", headers=o.auth)
        assert called.json()["ticket"]["number"] == "A002"
        await expect(page.locator("[data-window='5'] .ticket")).to_have_text("A002")
        assert await page.locator("#recent li").all_inner_texts() == ["A002 → 5号窗口"]

    run(tmp_path, scenario)


def test_kiosk_reconnects_after_the_agent_restarts_and_reads_its_services_again(
    tmp_path: Path,
) -> None:
    async def scenario(o: Outlet, page: Any) -> None:
        await page.goto(screen_url(o, "kiosk", "kiosk"))
        link = page.locator("#link")
        await expect(link).to_have_attribute("data-state", "open")
        await expect(page.get_by_role("button", name="社保医保")).to_be_visible()

        await o.stop_api()
        await expect(link).to_have_attribute("data-state", "reconnecting")
        await expect(link).to_have_text("正在重新连接…")

        async with page.expect_request(
            lambda r: urlsplit(r.url).path == "/v1/queue", timeout=30_000
        ) as reread:
            await o.start_api()
            await expect(link).to_have_attribute("data-state", "open", timeout=30_000)
        assert (await (await reread.value).response()).status == 200

        await page.get_by_role("button", name="社保医保").click()
        await expect(page.locator("#ticket-number")).to_have_text("A001")
        assert "A001" in "\n".join(o.printer.tickets[-1])

    run(tmp_path, scenario)
