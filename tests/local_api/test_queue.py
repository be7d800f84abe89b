"""Tickets and window operations: printer, LED and voice simulators, queue events recorded."""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path

import pytest

from edge_agent.queueing import QueueEngine
from tests.local_api.harness import TYPES, Outlet, outlet

Scenario = Callable[[Outlet], Awaitable[None]]
needs_espeak = pytest.mark.usefixtures("espeak_ng")  # fails under CI=true if missing


def run(tmp_path: Path, scenario: Scenario) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o:
            async with asyncio.timeout(40):
                await scenario(o)

    asyncio.run(main())


def test_ticket_is_issued_printed_and_recorded(tmp_path: Path) -> None:
    async def scenario(o: Outlet) -> None:
        response = await o.client.post(
            "/v1/tickets", headers=o.auth, json={"business_type": "social"}
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["number"] == "A001"
        assert body["printed"] is True
        assert body["warnings"] == []
        assert "A001" in o.printer.text_log()
        assert "社保医保" in o.printer.text_log()
        entry = await o.runtime.outbox.read(body["tx_id"])
        assert entry is not None
        assert entry.meta.tx_kind == "queue.issue"
        second = (
            await o.client.post("/v1/tickets", headers=o.auth, json={"business_type": "social"})
        ).json()
        assert second["number"] == "A002"
        assert second["waiting"] == 1

    run(tmp_path, scenario)


def test_paper_out_still_issues_the_ticket_with_a_warning(tmp_path: Path) -> None:
    async def scenario(o: Outlet) -> None:
        o.printer.paper = "end"
        response = await o.client.post("/v1/tickets", headers=o.auth, json={"business_type": "tax"})
        assert response.status_code == 201
        body = response.json()
        assert body["number"] == "B001"
        assert body["printed"] is False
        assert [w["code"] for w in body["warnings"]] == ["paper_out"]
        assert "paper roll" in body["warnings"][0]["hint"]
        state = (await o.client.get("/v1/queue", headers=o.auth)).json()
        tax = next(b for b in state["business_types"] if b["code"] == "tax")
        assert tax["waiting"] == 1

    run(tmp_path, scenario)


@needs_espeak
def test_window_call_shows_on_the_led_and_speaks_a_valid_wav(tmp_path: Path) -> None:
    async def scenario(o: Outlet) -> None:
        await o.client.post("/v1/tickets", headers=o.auth, json={"business_type": "social"})
        response = await o.client.post("/v1/windows/3/call", headers=o.auth)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["ticket"]["number"] == "A001"
        assert body["led"] == {"lines": ["请A001号到3号窗口", "等候人数:000"], "shown": True}
        assert o.led.text(3, 1) == "请A001号到3号窗口"
        assert o.led.text(3, 2) == "等候人数:000"
        assert body["announcement"]["text"] == "请A001号到3号窗口办理业务"
        entry = await o.runtime.outbox.read(body["tx_id"])
        assert entry is not None
        assert entry.meta.tx_kind == "queue.call"
        audio = await o.client.get(body["announcement"]["audio_url"], headers=o.auth)
        assert audio.status_code == 200
        assert audio.headers["content-type"] == "audio/wav"
        with wave.open(io.BytesIO(audio.content), "rb") as wav:
            assert wav.getnframes() > 0
            assert wav.getnchannels() == 1
        state = (await o.client.get("/v1/queue", headers=o.auth)).json()
        window = next(w for w in state["windows"] if w["window"] == "3")
        assert window["current_ticket"] == "A001"

    run(tmp_path, scenario)


def test_window_operations_and_their_errors(tmp_path: Path) -> None:
    async def scenario(o: Outlet) -> None:
        empty = await o.client.post("/v1/windows/3/recall", headers=o.auth)
        assert empty.status_code == 409
        assert empty.json()["error"] == "no_current_ticket"
        unknown = await o.client.post("/v1/windows/99/call", headers=o.auth)
        assert unknown.status_code == 404
        assert unknown.json()["error"] == "unknown_window"
        await o.client.post("/v1/tickets", headers=o.auth, json={"business_type": "social"})
        await o.client.post("/v1/windows/3/call", headers=o.auth)
        held = (await o.client.post("/v1/windows/3/hold", headers=o.auth)).json()
        assert held["ticket"]["status"] == "held"
        back = await o.client.post(
            "/v1/windows/5/call-back", headers=o.auth, json={"ticket": "A001"}
        )
        assert back.status_code == 200
        assert back.json()["ticket"]["window"] == "5"
        moved = await o.client.post(
            "/v1/windows/5/transfer", headers=o.auth, json={"to_window": "3"}
        )
        assert moved.json()["ticket"]["status"] == "waiting"
        paused = await o.client.post("/v1/windows/3/pause", headers=o.auth)
        assert paused.status_code == 200
        refused = await o.client.post("/v1/windows/3/call", headers=o.auth)
        assert refused.status_code == 409
        assert refused.json()["error"] == "window_paused"
        await o.client.post("/v1/windows/3/resume", headers=o.auth)
        bad = await o.client.post("/v1/windows/3/transfer", headers=o.auth, json={})
        assert bad.status_code == 422
        assert bad.json()["error"] == "invalid_request"

    run(tmp_path, scenario)


def test_snapshot_is_a_read_only_view_of_today(tmp_path: Path) -> None:
    async def main() -> None:
        async with QueueEngine(tmp_path, TYPES) as queue:
            await queue.configure_window("3", ["social"])
            await queue.configure_window("5", ["social", "tax"])
            empty = await queue.snapshot()
            assert empty.waiting == {"social": 0, "tax": 0}
            assert [w.window for w in empty.windows] == ["3", "5"]
            for business_type in ("social", "social", "tax"):
                await queue.issue(business_type)
            await queue.call("3")
            await queue.pause("5")
            before = await queue.events_after(0)
            snapshot = await queue.snapshot()
            assert await queue.events_after(0) == before  # no event recorded
            assert date.fromisoformat(snapshot.day)  # the outlet-local day
            assert snapshot.waiting == {"social": 1, "tax": 1}
            three, five = snapshot.windows
            assert (three.current_ticket, three.paused, three.waiting) == ("A001", False, 1)
            assert three.business_types == ("social",)
            assert (five.current_ticket, five.paused, five.waiting) == (None, True, 2)

    asyncio.run(main())


def test_get_queue_shows_the_snapshot(tmp_path: Path) -> None:
    async def scenario(o: Outlet) -> None:
        await o.client.post("/v1/tickets", headers=o.auth, json={"business_type": "social"})
        await o.client.post("/v1/tickets", headers=o.auth, json={"business_type": "tax"})
        await o.client.post("/v1/windows/5/call", headers=o.auth)
        await o.client.post("/v1/windows/3/pause", headers=o.auth)
        state = (await o.client.get("/v1/queue", headers=o.auth)).json()
        waiting = {b["code"]: b["waiting"] for b in state["business_types"]}
        assert waiting == {"social": 0, "tax": 1}
        windows = {w["window"]: w for w in state["windows"]}
        assert windows["5"]["current_ticket"] == "A001"
        assert windows["5"]["waiting"] == 1
        assert windows["3"]["paused"] is True
        assert windows["3"]["current_ticket"] is None

    run(tmp_path, scenario)
