"""The hall display speaks: Chromium plays a call's announcement into a real PulseAudio.

The display page runs in a real Chromium launched as docs/hall-pages.md tells the
display PC (the autoplay flag), whose sound goes to a private PulseAudio server with a
null sink standing in for the hall's loudspeakers (``PULSE_SERVER``); ``parec`` records
the sink's monitor. A clerk's ``POST /v1/windows/{w}/call`` shows on the display, and
the announcement's WAV, as the agent rendered it, is found in the recording: what a
citizen in the hall would hear.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from govedge_testbed.pulse import PulseServer
from tests.conftest import missing
from tests.health.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.local_api.harness import outlet
from tests.local_api.test_hall_pages import KIOSK_FLAGS, screen_url
from tests.local_api.test_outlet_voice import audio, locate, pulse, recorded, voiced

__all__ = ["pulse"]  # the fixture used below

pytestmark = pytest.mark.usefixtures("espeak_ng")  # fails under CI=true if missing

# The announcement in pieces of 0.2 s: each is found in the recording sample for sample,
# in order. A busy machine may let the browser's stream underrun for a few milliseconds
# (the sink then plays silence and the rest comes later), which shifts the pieces
# after it but changes none of them, so the whole WAV is not looked for in one go.
PIECE = 4410


@contextlib.asynccontextmanager
async def speaking_chromium(pulse: PulseServer) -> AsyncIterator[Any]:
    """Chromium as on the display PC, its sound going to ``pulse``'s null sink."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, *KIOSK_FLAGS],
            # Playwright mutes the browser by default; the display PC's is not muted.
            ignore_default_args=["--mute-audio"],
            env=pulse.client_env(),
        )
        try:
            yield browser
        finally:
            await browser.close()


def test_the_display_shows_a_call_and_the_hall_hears_it(tmp_path: Path, pulse: PulseServer) -> None:
    if not Path(CHROMIUM).exists():
        missing("Debian's chromium is not installed (apt-get install chromium)")
    recording = tmp_path / "hall.raw"

    async def main() -> None:
        async with outlet(tmp_path) as o, speaking_chromium(pulse) as browser:
            page = await browser.new_page()
            issued = await o.client.post(
                "/v1/tickets", headers=o.auth, json={"business_type": "social"}
            )
            assert issued.status_code == 201
            await page.goto(screen_url(o, "display", "display"))
            await expect(page.locator("#link")).to_have_attribute("data-state", "open")
            with pulse.record(recording):
                called = await o.client.post("/v1/windows/3/call", headers=o.auth)
                body = called.json()
                assert body["ticket"]["number"] == "A001"
                await expect(page.locator("[data-window='3'] .ticket")).to_have_text("A001")
                await expect(page.locator("body")).to_have_attribute(
                    "data-spoken", "1", timeout=60_000
                )
                await asyncio.sleep(0.5)  # the sink's last buffers reach the monitor
            wav = await audio(o, body)
        heard = recorded(recording)
        announcement = voiced(wav)
        found = [
            locate(announcement[start : start + PIECE], heard)
            for start in range(0, len(announcement) - PIECE + 1, PIECE)
        ]
        assert len(found) >= 5, "the announcement is shorter than a second"
        for offset, residual, gain in found:
            assert residual < 0.01, f"a piece of the announcement at {offset} not heard"
            assert gain == pytest.approx(1.0, abs=0.02)  # at full volume
        offsets = [offset for offset, _, _ in found]
        assert offsets == sorted(offsets), "the announcement was heard out of order"

    asyncio.run(main())
