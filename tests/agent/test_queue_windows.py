"""``[[queue_windows]]`` applied at agent start: the real ``open_runtime`` and queue files.

Starts the agent's runtime (outbox, queue, device discovery with no devices) three times
on one data directory: with two windows, again with the same config (nothing changes,
no event), then with one window removed (retired; its ticket waits again). The queue
events reach the outbox as transactions like every other queue operation.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from edge_agent.assembly import configured_windows, open_runtime
from edge_agent.settings import load_settings
from edge_agent.simulate import keypad_device_id

WINDOWS: list[dict[str, Any]] = [
    {"window": "1", "business_types": ["general"], "pad": "pad-1", "led": "led", "keypad": "kb"},
    {"window": "2", "business_types": ["social", "tax"], "led": "led", "keypad": "kb"},
]


async def _start(data_dir: Path, windows: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
    """Open the runtime, run ``more['then']`` on it if given, report windows and events."""
    settings = load_settings(
        outlet_id="qw-1", data_dir=data_dir, queue_windows=windows, simulate=more.get("simulate")
    )
    async with AsyncExitStack() as stack:
        runtime = (await open_runtime(settings, stack=stack)).runtime
        then = more.get("then")
        if then is not None:
            await then(runtime)
        snapshot = await runtime.queue.snapshot()
        events = [event for _, event in await runtime.queue.events_after(0)]
        in_outbox = [
            await runtime.outbox.read(str(event["id"]))
            for event in events
            if event["kind"].startswith("queue.window_")
        ]
        return {
            "windows": [(w.window, w.business_types) for w in snapshot.windows],
            "kinds": [e["kind"] for e in events],
            "events": events,
            "in_outbox": in_outbox,
            "runtime_windows": dict(runtime.windows),
        }


def test_windows_applied_at_start_idempotently_and_retired_when_removed(tmp_path: Path) -> None:
    data_dir = tmp_path / "agent"

    async def call_one(runtime: Any) -> None:
        await runtime.queue.issue("social")
        await runtime.queue.call("2")

    async def main() -> None:
        first = await _start(data_dir, WINDOWS, then=call_one)
        assert first["windows"] == [("1", ("general",)), ("2", ("social", "tax"))]
        assert first["kinds"][:2] == ["queue.window_configured", "queue.window_configured"]
        assert all(entry is not None for entry in first["in_outbox"])  # put at start
        config = first["runtime_windows"]["2"]
        assert (config.led, config.led_address, config.keypad_address) == ("led", 2, 2)

        again = await _start(data_dir, WINDOWS)
        assert again["windows"] == first["windows"]
        assert again["kinds"] == first["kinds"]  # the same config changed nothing

        fewer = await _start(data_dir, WINDOWS[:1])
        assert fewer["windows"] == [("1", ("general",))]
        retired = fewer["events"][-1]
        assert retired["kind"] == "queue.window_retired"
        assert (retired["window"], retired["returned_ticket"]) == ("2", "B001")
        assert fewer["in_outbox"][-1] is not None
        assert fewer["in_outbox"][-1].meta.tx_kind == "queue.window_retired"

    asyncio.run(main())


def test_no_windows_configured_means_no_windows_except_when_simulating(tmp_path: Path) -> None:
    none = asyncio.run(_start(tmp_path / "plain", []))
    assert none["windows"] == []
    # ``--simulate`` without [[queue_windows]]: the simulated outlet's two windows (the
    # whole simulated agent is run by tests/e2e/test_counter_flow.py; not here, so this
    # test starts no pcscd)
    simulated = load_settings(outlet_id="qw-1", data_dir=tmp_path, simulate=True)
    one, two = configured_windows(simulated)
    assert (one.window, one.business_types, two.window, two.business_types) == (
        "1", ("general", "social"), "2", ("realestate", "tax"),
    )  # fmt: skip
    assert (one.pad, one.led, one.led_address, one.keypad, one.keypad_address) == (
        "sim-window-1-pad", "sim-window-led", 1, keypad_device_id(), 1,
    )  # fmt: skip
    assert (two.pad, two.led_address, two.keypad_address) == (None, 2, 2)
    # declared windows win over the simulated set
    declared = load_settings(
        outlet_id="qw-1", data_dir=tmp_path, simulate=True, queue_windows=WINDOWS[1:]
    )
    assert [w.window for w in configured_windows(declared)] == ["2"]
