"""KeypadQueueBridge with a real keypad bus and a real queue, without the local API.

The caller keypad driver talks to the keypad simulator over a real pseudo-terminal and
publishes its ``keypad.*`` events on a real ``EventHub``; the bridge runs them against a
real ``QueueEngine`` in a temporary directory. ``after`` (in the agent: the local API's
outbox + LED + voice path, tested in tests/queueing/test_keypad_loop.py) is here a
recorder that fails once, to show that one failing key does not stop the keypads.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge_agent.devices import DeviceIdentity
from edge_agent.devices.caller_keypad.driver import CallerKeypad
from edge_agent.devices.caller_keypad.protocol import Key
from edge_agent.devices.caller_keypad.simulator import CallerKeypadSimulator
from edge_agent.discovery.events import EventHub
from edge_agent.queueing import BusinessType, QueueEngine, QueueResult
from edge_agent.queueing.keypad import KeypadQueueBridge, KeyRefused

TYPES = [BusinessType(code="social", prefix="A", name="社保医保")]


def test_a_failing_after_step_does_not_stop_the_keypads(tmp_path: Path) -> None:
    async def main() -> None:
        hub = EventHub()
        done: list[tuple[str, str, str | None]] = []
        refusals: list[KeyRefused] = []
        progress = asyncio.Event()

        async def after(result: QueueResult, operation: str, window: str, device: str) -> None:
            progress.set()
            if not done:
                done.append(("failed", window, None))
                raise RuntimeError("the LED path blew up")
            done.append((operation, window, result.ticket.number if result.ticket else None))

        def refused(refusal: KeyRefused) -> None:
            refusals.append(refusal)
            progress.set()

        async with (
            QueueEngine(tmp_path, TYPES) as queue,
            CallerKeypadSimulator(addresses=(2,)) as keypads,
        ):
            await queue.configure_window("2", ["social"])
            for _ in range(2):
                await queue.issue("social")
            identity = DeviceIdentity(
                device_id="bus-1", profile="caller-keypad", kind="caller_keypad",
                address=keypads.address,
            )  # fmt: skip
            driver = CallerKeypad(identity, on_event=hub.publish)
            bridge = KeypadQueueBridge(
                queue, after=after, driver_of=lambda _: driver, on_refused=refused
            )
            async with driver, hub.subscribe() as events:
                task = asyncio.create_task(bridge.run(lambda: events.get(timeout_s=30)))

                async def press(key: Key, arg: str = "") -> None:
                    progress.clear()
                    keypads.press(2, key, arg=arg)
                    async with asyncio.timeout(10):
                        await progress.wait()

                await press(Key.CALL)  # A001 called; after() fails
                await press(Key.CALL)  # A002 called; the bridge still runs
                await press(Key.CALLBACK, "B001")  # no such business type → refused
                task.cancel()
                await asyncio.wait([task])
            snapshot = await queue.snapshot()
        assert done == [("failed", "2", None), ("call", "2", "A002")]
        assert bridge.failed == 1
        assert bridge.handled == 2
        assert [r.reason for r in refusals] == ["TicketNotFound"]
        assert snapshot.windows[0].current_ticket == "A002"
        assert keypads.display(2) == "NOFIND"

    asyncio.run(main())
