"""Caller keypads drive the queue over their real bus protocol.

The keypad simulator puts real FT1.2-style key frames (``FF 68 L L 68 ADDR 01 KEY CS 16``)
on a TCP bus; the ``caller_keypad`` driver acknowledges them and publishes ``keypad.*``;
the local API's keypad bridge runs the window operation through the ``QueueEngine`` and
the same ``present`` path as ``POST /v1/windows/{w}/…``. The checks are what really
happened: the queue's state, the GB2312 text the LED simulator decoded from the frames it
received, the keypad's display frame, the queue event in the outbox, the WAV rendered by
espeak-ng, and the ``window.result`` event a clerk app receives on its real WebSocket.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from edge_agent.devices import DeviceEvent
from edge_agent.devices.caller_keypad.protocol import Key
from edge_agent.devices.caller_keypad.simulator import CallerKeypadSimulator
from edge_agent.discovery import Subscription
from edge_agent.fleet_config.effective import LiveSettings
from edge_agent.queueing import WindowConfig, WindowSnapshot
from govedge_wire.config import EvaluationConfig
from tests.local_api.harness import KEYPAD_BUS, Outlet, outlet

Scenario = Callable[[Outlet, CallerKeypadSimulator, Subscription], Awaitable[None]]
needs_espeak = pytest.mark.usefixtures("espeak_ng")  # fails under CI=true if missing


def run(
    tmp_path: Path,
    scenario: Scenario,
    *,
    windows: Sequence[WindowConfig] | None = None,
    live: LiveSettings | None = None,
) -> None:
    async def main() -> None:
        async with outlet(tmp_path, keypad=True, windows=windows, live=live) as o:
            assert o.keypad is not None
            async with o.runtime.events.subscribe() as events:
                async with asyncio.timeout(60):
                    await scenario(o, o.keypad, events)

    asyncio.run(main())


async def outcome(events: Subscription, of: str = "window") -> DeviceEvent:
    """The next ``{of}.result`` or ``{of}.refused`` of a keypad (window or evaluation)."""
    while True:
        event = await events.get(timeout_s=20)
        if event.name in (f"{of}.result", f"{of}.refused"):
            assert event.device_id == KEYPAD_BUS
            return event


async def press(
    keypads: CallerKeypadSimulator, events: Subscription, window: int, key: Key, arg: str = ""
) -> DeviceEvent:
    keypads.press(window, key, arg=arg)
    return await outcome(events)


async def window(o: Outlet, name: str) -> WindowSnapshot:
    snapshot = await o.runtime.queue.snapshot()
    return next(w for w in snapshot.windows if w.window == name)


async def issue(o: Outlet, business_type: str = "social") -> str:
    response = await o.client.post(
        "/v1/tickets", headers=o.auth, json={"business_type": business_type, "print": False}
    )
    assert response.status_code == 201, response.text
    number: str = response.json()["number"]
    return number


@needs_espeak
def test_call_key_calls_the_next_ticket_shows_it_and_announces_it(tmp_path: Path) -> None:
    async def scenario(o: Outlet, keypads: CallerKeypadSimulator, events: Subscription) -> None:
        assert await issue(o) == "A001"
        assert await issue(o) == "A002"
        async with o.events_socket() as ws:
            keypads.press(3, Key.CALL)
            async with asyncio.timeout(20):
                while True:
                    message: dict[str, Any] = json.loads(await ws.recv())
                    if message.get("name") == "window.result":
                        break
        result = (await outcome(events)).data
        assert message["data"]["ticket"]["number"] == "A001"
        assert result["operation"] == "call"
        assert result["window"] == "3"
        assert result["ticket"]["number"] == "A001"
        assert result["warnings"] == []
        # the queue: A001 is at window 3, one waits
        at_three = await window(o, "3")
        assert at_three.current_ticket == "A001"
        assert at_three.waiting == 1
        # the LED simulator decoded these GB2312 frames for screen 3
        assert o.led.text(3, 1) == "请A001号到3号窗口"
        assert o.led.text(3, 2) == "等候人数:001"
        # the keypad's own display and its E5 for our key frame
        assert keypads.display(3) == "A001"
        assert keypads.acks_received >= 1
        # the queue event is in the outbox, like the HTTP path's
        entry = await o.runtime.outbox.read(result["tx_id"])
        assert entry is not None
        assert entry.meta.tx_kind == "queue.call"
        # the announcement was rendered to a real WAV by espeak-ng
        assert result["announcement"]["text"] == "请A001号到3号窗口办理业务"
        wav = await o.client.get(result["announcement"]["audio_url"], headers=o.auth)
        assert wav.status_code == 200
        assert wav.content[:4] == b"RIFF"

    run(tmp_path, scenario)


def test_every_window_key_performs_its_operation(tmp_path: Path) -> None:
    async def scenario(o: Outlet, keypads: CallerKeypadSimulator, events: Subscription) -> None:
        for _ in range(3):
            await issue(o)
        await issue(o, "tax")  # B001: window 5 serves social and tax

        await press(keypads, events, 3, Key.CALL)  # A001 at 3
        recall = (await press(keypads, events, 3, Key.RECALL)).data
        assert recall["operation"] == "recall"
        assert recall["ticket"]["calls"] == 2
        assert recall["announcement"]["text"].endswith("(重呼)")

        skip = (await press(keypads, events, 3, Key.SKIP)).data  # 弃号 A001
        assert skip["operation"] == "skip"
        assert skip["ticket"]["status"] == "skipped"
        assert keypads.display(3) == "----"

        await press(keypads, events, 3, Key.CALL)  # A002
        hold = (await press(keypads, events, 3, Key.HOLD)).data
        assert hold["ticket"]["number"] == "A002"
        assert hold["ticket"]["status"] == "held"

        back = (await press(keypads, events, 3, Key.CALLBACK, "A002")).data  # 回呼
        assert back["operation"] == "call-back"
        assert (await window(o, "3")).current_ticket == "A002"
        assert keypads.display(3) == "A002"
        assert o.led.text(3, 1) == "请A002号到3号窗口"

        moved = (await press(keypads, events, 3, Key.TRANSFER, "5")).data  # 转移 to window 5
        assert moved["operation"] == "transfer"
        assert (await window(o, "3")).current_ticket is None
        at_five = (await press(keypads, events, 5, Key.CALL)).data
        assert at_five["ticket"]["number"] == "A002"  # transferred tickets keep their place
        assert keypads.display(5) == "A002"
        assert o.led.text(5, 1) == "请A002号到5号窗口"

        evaluate = (await press(keypads, events, 5, Key.EVALUATE)).data
        assert evaluate["operation"] == "evaluate"
        assert keypads.display(5) == "EVAL"
        # the evaluate key put the request on the (only) pad; the citizen walks away
        shown = await o.pad.wait_for_request(within=10)
        assert (shown["window"], shown["case_no"]) == ("5", f"T{today(o)}-A002")
        o.pad.walk_away()
        ended = await outcome(events, "evaluation")
        assert (ended.name, ended.data["status"], ended.data["tx_id"]) == (
            "evaluation.result", "timed_out", None,
        )  # fmt: skip

    run(tmp_path, scenario)


def test_pause_key_toggles_and_a_refused_key_changes_nothing(tmp_path: Path) -> None:
    async def scenario(o: Outlet, keypads: CallerKeypadSimulator, events: Subscription) -> None:
        await issue(o)
        paused = (await press(keypads, events, 3, Key.PAUSE)).data
        assert paused["operation"] == "pause"
        assert (await window(o, "3")).paused
        assert keypads.display(3) == "PAUSE"

        refused = await press(keypads, events, 3, Key.CALL)
        assert refused.name == "window.refused"
        assert refused.data["reason"] == "WindowPaused"
        assert keypads.display(3) == "PAUSED"
        assert (await window(o, "3")).current_ticket is None  # nothing changed

        resumed = (await press(keypads, events, 3, Key.PAUSE)).data
        assert resumed["operation"] == "resume"
        assert not (await window(o, "3")).paused
        called = (await press(keypads, events, 3, Key.CALL)).data
        assert called["ticket"]["number"] == "A001"

        missing = await press(keypads, events, 3, Key.CALLBACK)  # no ticket typed
        assert missing.name == "window.refused"
        assert keypads.display(3) == "NO ARG"
        unknown = await press(keypads, events, 3, Key.CALLBACK, "A999")
        assert unknown.data["reason"] == "TicketNotFound"
        assert (await window(o, "3")).current_ticket == "A001"

    run(tmp_path, scenario)


def today(o: Outlet) -> str:
    """The outlet-local day as the ticket reference has it (yyyymmdd)."""
    return datetime.now(o.runtime.queue.tz).strftime("%Y%m%d")


# Window 3 with its pad, LED screen 3 and keypad 3; window "VIP" (a name, not a number)
# with LED screen 5 and keypad 5 on the same buses, as [[queue_windows]] declares them.
CONFIGURED = (
    WindowConfig(
        window="3", business_types=("social",), pad="pad-3",
        led="led-bus", led_address=3, keypad=KEYPAD_BUS, keypad_address=3,
    ),
    WindowConfig(
        window="VIP", business_types=("social", "tax"),
        led="led-bus", led_address=5, keypad=KEYPAD_BUS, keypad_address=5,
    ),
)  # fmt: skip


def test_configured_windows_route_keypads_and_led_screens_by_address(tmp_path: Path) -> None:
    async def scenario(o: Outlet, keypads: CallerKeypadSimulator, events: Subscription) -> None:
        assert await issue(o) == "A001"
        assert await issue(o, "tax") == "B001"
        called = (await press(keypads, events, 5, Key.CALL)).data  # keypad 5 is window VIP
        assert (called["window"], called["ticket"]["number"]) == ("VIP", "A001")
        assert called["warnings"] == []
        assert (await window(o, "VIP")).current_ticket == "A001"
        assert keypads.display(5) == "A001"
        assert o.led.text(5, 1) == "请A001号到VIP号窗口"  # screen 5 is VIP's
        # keypad 4 is on the bus but no window claims it: refused, nothing changes
        refused = await press(keypads, events, 4, Key.CALL)
        assert (refused.name, refused.data["reason"]) == ("window.refused", "UnknownWindow")
        assert keypads.display(4) == "NO WIN"
        assert (await o.runtime.queue.snapshot()).waiting["tax"] == 1

    run(tmp_path, scenario, windows=CONFIGURED)


def test_evaluate_key_asks_the_windows_pad_and_records_the_rating(tmp_path: Path) -> None:
    async def scenario(o: Outlet, keypads: CallerKeypadSimulator, events: Subscription) -> None:
        await issue(o)
        await press(keypads, events, 3, Key.CALL)  # A001 at window 3
        asked = (await press(keypads, events, 3, Key.EVALUATE)).data
        assert asked["operation"] == "evaluate"
        # the real pad protocol: window 3's pad shows the request for the ticket
        shown = await o.pad.wait_for_request(within=10)
        assert shown["window"] == "3"
        assert shown["case_no"] == f"T{today(o)}-A001"
        # a second evaluate key while the citizen is still rating: refused, pad busy
        again = (await press(keypads, events, 3, Key.EVALUATE)).data
        assert again["operation"] == "evaluate"
        busy = await outcome(events, "evaluation")
        assert (busy.name, busy.data["error"]) == ("evaluation.refused", "pad_busy")
        assert keypads.display(3) == "BUSY"
        assert len(o.pad.requests) == 1
        # the citizen rates 2 stars (a 差评)
        o.pad.press(2, tags=["attitude"], text="等太久")
        rated = await outcome(events, "evaluation")
        assert rated.name == "evaluation.result"
        assert rated.data["status"] == "rated"
        assert (rated.data["stars"], rated.data["is_bad"]) == (2, True)
        assert (rated.data["window"], rated.data["ticket"]) == ("3", "A001")
        assert "等太久" not in json.dumps(
            rated.data, ensure_ascii=False
        )  # free text stays in the tx
        assert keypads.display(3) == "RATED"
        # the same evaluation transaction as POST /v1/evaluations records
        entry = await o.runtime.outbox.read(rated.data["tx_id"])
        assert entry is not None
        assert entry.meta.tx_kind == "evaluation"
        assert entry.body["case_number"] == f"T{today(o)}-A001"
        assert (entry.body["window"], entry.body["stars"], entry.body["channel"]) == ("3", 2, "4")
        assert entry.body["text"] == "等太久"
        status = await o.client.get(f"/v1/transactions/{rated.data['tx_id']}", headers=o.auth)
        assert status.status_code == 200
        assert status.json()["tx_kind"] == "evaluation"

    run(tmp_path, scenario, windows=CONFIGURED)


def test_evaluate_key_without_the_windows_pad_is_refused_on_the_keypad(tmp_path: Path) -> None:
    """The config names a pad that is not there: nothing is shown, nothing recorded."""
    missing = (
        WindowConfig(
            window="3", business_types=("social",), pad="pad-of-window-3",
            keypad=KEYPAD_BUS, keypad_address=3,
        ),
    )  # fmt: skip

    async def scenario(o: Outlet, keypads: CallerKeypadSimulator, events: Subscription) -> None:
        await issue(o)
        await press(keypads, events, 3, Key.CALL)
        await press(keypads, events, 3, Key.EVALUATE)
        refused = await outcome(events, "evaluation")
        assert (refused.name, refused.data["error"]) == ("evaluation.refused", "unknown_device")
        assert keypads.display(3) == "NO PAD"
        assert o.pad.requests == []  # the outlet's other pad was not used

    run(tmp_path, scenario, windows=missing)


def test_a_walk_away_at_the_evaluate_key_says_the_default_rating_is_pending(
    tmp_path: Path,
) -> None:
    """A region whose profile records a default rating (Zhejiang's channel 7, in a day):
    the keypad's ``evaluation.result`` says it is pending, as the clerk app's answer
    does, so a hall display or console can say 将记默认好评 instead of 评价超时."""
    zhejiang = EvaluationConfig(
        level_coding="zhejiang", default_channels=("7",), default_stars=5, default_after_s=86400
    )
    live = LiveSettings(telemetry_interval_s=30.0, outbox_rate_per_s=20.0, evaluation=zhejiang)

    async def scenario(o: Outlet, keypads: CallerKeypadSimulator, events: Subscription) -> None:
        await issue(o)
        await press(keypads, events, 3, Key.CALL)
        await press(keypads, events, 3, Key.EVALUATE)
        await o.pad.wait_for_request(within=10)
        o.pad.walk_away()
        ended = await outcome(events, "evaluation")
        assert (ended.name, ended.data["status"], ended.data["tx_id"]) == (
            "evaluation.result", "timed_out", None,
        )  # fmt: skip
        default = ended.data["default_rating"]
        assert (default["state"], default["stars"]) == ("pending", 5)
        assert default["tx_id"].startswith("default-")
        due = datetime.fromisoformat(default["due_at"].replace("Z", "+00:00"))
        assert 86000 < (due - datetime.now(due.tzinfo)).total_seconds() <= 86400
        assert keypads.display(3) == "NORATE"

    run(tmp_path, scenario, live=live)
