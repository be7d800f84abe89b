"""Queue events reach the outbox exactly once, even if the agent dies between the two.

The queue engine commits an operation and its event record in one SQLite transaction;
the outbox is another database. The agent replays ``queue.events_after(cursor)`` into
the outbox (``transactions.relay_queue_events``), the cursor committed with each entry,
at start and after each operation. Here a real child process (the agent's own
``open_runtime`` stack) runs a queue operation and is SIGKILLed before it puts the
event; the restarted stack puts it, once, and no later replay puts anything twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

from edge_agent.assembly import open_runtime
from edge_agent.outbox import OutboxFull, PriorityClass
from edge_agent.runtime import AgentRuntime
from edge_agent.settings import AgentSettings
from edge_agent.settings_models import QueueWindowSetting
from edge_agent.transactions import relay_queue_events

REPO = Path(__file__).resolve().parents[2]

# The agent's own startup stack; a window call committed, then death before the put.
CHILD = """
import asyncio, os, signal, sys
from contextlib import AsyncExitStack
from pathlib import Path
from edge_agent.assembly import open_runtime
from edge_agent.settings import AgentSettings
from edge_agent.settings_models import QueueWindowSetting
from edge_agent.transactions import relay_queue_events

async def main(data_dir):
    plain = AgentSettings(outlet_id="crash-outlet", data_dir=Path(data_dir))
    code = plain.queue_business_types[0].code
    settings = plain.model_copy(
        update={"queue_windows": (QueueWindowSetting(window="1", business_types=(code,)),)}
    )
    async with AsyncExitStack() as stack:
        runtime = (await open_runtime(settings, stack=stack)).runtime  # window 1 applied
        await runtime.queue.issue(code)
        await relay_queue_events(runtime)
        called = await runtime.queue.call("1")   # committed in the queue database
        print("called", called.event["id"], flush=True)
        os.kill(os.getpid(), signal.SIGKILL)     # dies before the event reaches the outbox

asyncio.run(main(sys.argv[1]))
"""


def _settings(data_dir: Path) -> AgentSettings:
    """The child's settings: window 1 declared, so a restart changes no window."""
    plain = AgentSettings(outlet_id="crash-outlet", data_dir=data_dir)
    code = plain.queue_business_types[0].code
    window = QueueWindowSetting(window="1", business_types=(code,))
    return plain.model_copy(update={"queue_windows": (window,)})


async def _outbox_ids(runtime: AgentRuntime) -> Counter[str]:
    return Counter(entry.tx_id for entry in await runtime.outbox.next_batch(10_000))


async def _queue_ids(runtime: AgentRuntime) -> list[str]:
    return [str(event["id"]) for _, event in await runtime.queue.events_after(0)]


def test_an_event_lost_to_a_sigkill_is_put_at_restart_exactly_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "agent"
    data_dir.mkdir(mode=0o700)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(data_dir)],
        capture_output=True,
        text=True,
        timeout=90,
        env=os.environ | {"PYTHONPATH": str(REPO)},
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    called_id = child.stdout.split()[-1]

    async def restart_and_check() -> None:
        async with AsyncExitStack() as stack:
            runtime = (await open_runtime(_settings(data_dir), stack=stack)).runtime
            events = await _queue_ids(runtime)
            assert called_id in events  # the call was committed before the kill
            in_outbox = await _outbox_ids(runtime)
            assert in_outbox[called_id] == 1  # put by the replay at start
            assert in_outbox == Counter(events)  # every event exactly once, none doubled
            assert await relay_queue_events(runtime) == 0

            # Delivered and acknowledged entries leave the outbox; a replay (after the
            # next operation, or the next start) must not put them back.
            for tx_id in in_outbox:
                assert await runtime.outbox.ack(tx_id)
            code = _settings(data_dir).queue_business_types[0].code
            issued = await runtime.queue.issue(code)
            assert await relay_queue_events(runtime) == 1
            assert await _outbox_ids(runtime) == Counter([str(issued.event["id"])])

        async with AsyncExitStack() as stack:  # a clean restart replays nothing more
            runtime = (await open_runtime(_settings(data_dir), stack=stack)).runtime
            assert await _outbox_ids(runtime) == Counter([str(issued.event["id"])])

    asyncio.run(restart_and_check())


def test_an_event_a_full_outbox_refused_goes_in_with_the_next_operation(tmp_path: Path) -> None:
    data_dir = tmp_path / "agent"
    data_dir.mkdir(mode=0o700)
    settings = AgentSettings(
        outlet_id="crash-outlet", data_dir=data_dir, outbox_quota_bytes=1024 * 1024
    )
    code = settings.queue_business_types[0].code

    async def scenario() -> None:
        async with AsyncExitStack() as stack:
            runtime = (await open_runtime(settings, stack=stack)).runtime
            await runtime.queue.configure_window("1", [code])
            filler: list[str] = []
            for size in (100_000, 10_000, 1_000, 100, 10):  # fill the quota to the brim
                try:
                    for n in range(1000):
                        stored = await runtime.outbox.put(
                            "submission", {"pad": "x" * size, "n": n},
                            priority_class=PriorityClass.TRANSACTION,
                        )  # fmt: skip
                        filler.append(stored.tx_id)
                except OutboxFull:
                    continue
            first = await runtime.queue.issue(code)
            try:
                await relay_queue_events(runtime)
            except OutboxFull:
                pass
            else:
                raise AssertionError("the outbox took an event beyond its quota")
            assert str(first.event["id"]) not in await _outbox_ids(runtime)

            for tx_id in filler:  # the network is back: delivered, acknowledged
                await runtime.outbox.ack(tx_id)
            second = await runtime.queue.issue(code)
            assert await relay_queue_events(runtime) == 3  # configure, first, second
            in_order = [e.tx_id for e in await runtime.outbox.next_batch(100)]
            assert in_order == await _queue_ids(runtime)  # oldest first, each once
            assert in_order[-2:] == [str(first.event["id"]), str(second.event["id"])]

    asyncio.run(scenario())
