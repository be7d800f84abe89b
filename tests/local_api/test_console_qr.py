"""The 好差评 QR code for a window without a pad: the agent draws it, the console shows it.

Through the real local API (simulated pad, printer, LED): ``GET
/v1/windows/{w}/evaluation-qr`` answers the province's page of the case from the
``evaluation_qr_url`` template as an SVG QR code for a padless window, and nothing for a
window with a pad. In a real Chromium the counter console shows the code for the padless
window (read back from a screenshot with OpenCV's QR decoder) and the rate button for
the window with a pad.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from playwright.async_api import expect
from pydantic import ValidationError

from edge_agent.fleet_config.effective import LiveSettings
from edge_agent.local_api import LocalApiOptions
from edge_agent.queueing import WindowConfig
from govedge_wire.config import EvaluationConfig
from tests.conftest import missing
from tests.health.conftest import CHROMIUM
from tests.local_api.harness import OUTLET, Outlet, outlet
from tests.local_api.test_hall_pages import QR_TEMPLATE, chromium

WINDOWS = [
    WindowConfig(window="3", business_types=("social",), pad="pad-3"),
    WindowConfig(window="5", business_types=("social", "tax")),  # no pad
]
WITH_QR = LocalApiOptions(evaluation_qr_url=QR_TEMPLATE, speak=False)


def link(case_number: str) -> str:
    return QR_TEMPLATE.format(case_number=case_number, outlet=OUTLET)


def run(tmp_path: Path, scenario: Any, options: LocalApiOptions = WITH_QR) -> None:
    async def main() -> None:
        async with outlet(tmp_path, windows=WINDOWS, options=options) as o:
            async with asyncio.timeout(90):
                await scenario(o)

    asyncio.run(main())


async def qr(o: Outlet, window: str, **params: str) -> Any:
    return await o.client.get(f"/v1/windows/{window}/evaluation-qr", headers=o.auth, params=params)


async def call_ticket(o: Outlet, business_type: str, window: str) -> str:
    taken = await o.client.post(
        "/v1/tickets", headers=o.auth, json={"business_type": business_type, "print": False}
    )
    called = await o.client.post(f"/v1/windows/{window}/call", headers=o.auth)
    assert called.json()["ticket"]["number"] == taken.json()["number"]
    return str(taken.json()["number"])


def test_a_padless_window_gets_the_qr_code_and_a_window_with_a_pad_does_not(
    tmp_path: Path,
) -> None:
    async def scenario(o: Outlet) -> None:
        nothing_yet = (await qr(o, "5")).json()
        assert nothing_yet["pad"] is None
        assert nothing_yet["url"] is None  # no ticket at the window, no case given
        assert nothing_yet["svg"] is None

        number = await call_ticket(o, "tax", "5")
        day = (await o.client.get("/v1/queue", headers=o.auth)).json()["day"].replace("-", "")
        answer = (await qr(o, "5")).json()
        assert answer["case_number"] == f"T{day}-{number}"
        assert answer["url"] == link(f"T{day}-{number}")
        assert answer["svg"].startswith("<svg")
        assert 'xmlns="http://www.w3.org/2000/svg"' in answer["svg"]

        filed = (await qr(o, "5", case_number="330902-2026-0001")).json()
        assert filed["url"] == link("330902-2026-0001")

        await call_ticket(o, "social", "3")
        padded = (await qr(o, "3")).json()
        assert padded["pad"] == "pad-3"
        assert padded["url"] is None
        assert padded["svg"] is None

    run(tmp_path, scenario)


def test_bad_requests_and_hall_screens_are_refused(tmp_path: Path) -> None:
    async def scenario(o: Outlet) -> None:
        unknown = await qr(o, "9")
        assert unknown.status_code == 404
        assert unknown.json()["error"] == "unknown_window"
        for bad in ("", "x" * 65):
            response = await qr(o, "5", case_number=bad)
            assert response.status_code == 422, bad
            assert response.json()["error"] == "invalid_request"
        origin = f"http://127.0.0.1:{o.port}"
        _, display = o.apps.add("hall-display", origins=[origin], role="display")
        refused = await o.client.get(
            "/v1/windows/5/evaluation-qr",
            headers={"Authorization": f"Bearer {display}", "Origin": origin},
        )
        assert refused.status_code == 403
        assert refused.json()["error"] == "role_not_allowed"

    run(tmp_path, scenario)


def test_without_a_template_no_window_gets_a_code(tmp_path: Path) -> None:
    async def scenario(o: Outlet) -> None:
        await call_ticket(o, "tax", "5")
        answer = (await qr(o, "5")).json()
        assert answer["pad"] is None
        assert answer["case_number"]
        assert answer["url"] is None
        assert answer["svg"] is None

    run(tmp_path, scenario, LocalApiOptions(speak=False))


PROVINCE = "https://hcp.province.example/rate?bh={case_number}&wd={outlet}"


def test_the_regions_profile_template_wins_over_the_local_one(tmp_path: Path) -> None:
    """The QR page is the province's: the fleet config's ``evaluation.qr_url`` is used,
    over the agent's local setting, and from the moment a new config sets it."""
    live = LiveSettings(
        telemetry_interval_s=30.0, outbox_rate_per_s=20.0,
        evaluation=EvaluationConfig(qr_url=PROVINCE),
    )  # fmt: skip

    async def main() -> None:
        async with outlet(tmp_path, windows=WINDOWS, options=WITH_QR, live=live) as o:
            number = await call_ticket(o, "tax", "5")
            answer = (await qr(o, "5")).json()
            assert answer["url"] == PROVINCE.format(
                case_number=answer["case_number"], outlet=OUTLET
            )
            assert number in answer["case_number"]
            assert o.runtime.live is not None  # a config without the template: the local one
            o.runtime.live.evaluation = EvaluationConfig(level_coding="gbt39046")
            assert (await qr(o, "5")).json()["url"] == link(answer["case_number"])

    asyncio.run(main())


def test_a_bad_template_in_a_config_is_refused() -> None:
    for bad in ("ftp://hcp.example/{case_number}", "https://hcp.example/?c={case}"):
        with pytest.raises(ValidationError, match="evaluation QR URL"):
            EvaluationConfig(qr_url=bad)


def decode_qr(png: bytes) -> str:
    image = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image is not None, "the screenshot is not a PNG OpenCV reads"
    text, _, _ = cv2.QRCodeDetector().detectAndDecode(image)
    return str(text)


def test_the_console_shows_the_code_for_a_padless_window_only(tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        missing("Debian's chromium is not installed (apt-get install chromium)")

    async def scenario(o: Outlet) -> None:
        origin = f"http://127.0.0.1:{o.port}"
        _, token = o.apps.add("counter-console", origins=[origin])
        async with chromium() as browser:
            page = await (await browser.new_context(locale="zh-CN")).new_page()
            await page.goto(f"{origin}/console/?window=5&clerk=S007")
            await page.fill("#token", token)
            await page.click("#setup-form button[type=submit]")
            await expect(page.locator("#rating-channel")).to_contain_text("暂无可评价")
            await expect(page.locator("#qr")).to_be_hidden()

            await o.client.post("/v1/tickets", headers=o.auth, json={"business_type": "tax"})
            await page.click("#call")
            await expect(page.locator("#current")).to_have_text("B001")
            await expect(page.locator("#qr")).to_be_visible()
            await expect(page.locator("#rating-channel")).to_have_text("扫码评价")
            await expect(page.locator("#rate")).to_be_hidden()  # no pad to ask
            day = (await o.client.get("/v1/queue", headers=o.auth)).json()["day"]
            case = f"T{day.replace('-', '')}-B001"
            await expect(page.locator("#qr-case")).to_have_text(case)
            shot = await page.locator("#qr-image").screenshot()
            assert decode_qr(shot) == link(case)

            await o.client.post("/v1/tickets", headers=o.auth, json={"business_type": "social"})
            await page.goto(f"{origin}/console/?window=3&clerk=S007")  # the token is kept
            await page.click("#call")
            await expect(page.locator("#current")).to_have_text("A001")
            await expect(page.locator("#rating-channel")).to_have_text("评价器 pad-3")
            await expect(page.locator("#qr")).to_be_hidden()
            await expect(page.locator("#rate")).to_be_visible()

    run(tmp_path, scenario)
