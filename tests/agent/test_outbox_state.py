"""``edge-agent outbox status`` against a running agent, which holds its outbox locked.

A real outbox (SQLite, locked as the agent holds it), the real technician socket served
in-process and the real state-file writer; the command's reader runs in a thread as
the CLI would run it beside the agent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge_agent.discovery import DeviceManager, UdevSource
from edge_agent.outbox import Outbox, PriorityClass
from edge_agent.profiles import ProfileSet
from edge_agent.technician.outbox_state import (
    STATE_FILE,
    OutboxState,
    publish_outbox_state,
    read_current_outbox_state,
)
from edge_agent.technician.socket_api import SOCKET_FILE, serve_technician_socket

TX = PriorityClass.TRANSACTION


def _open_outbox(data_dir: Path) -> Outbox:
    return Outbox(data_dir / "outbox.db", key_path=data_dir / "outbox.key", quota_bytes=10_000_000)


def _counts(outbox: Outbox):  # type: ignore[no-untyped-def]
    async def counts() -> tuple[int, int, float | None]:  # what the daemon gives the socket
        stats = await outbox.stats()
        return sum(stats.depth.values()), stats.dead_letters, stats.oldest_age_s

    return counts


@pytest.mark.timeout(60)
def test_the_running_agent_is_asked_and_counts_a_case_put_just_before(tmp_path: Path) -> None:
    """The reader asks the agent over its technician socket: the answer counts a case
    the outbox took a moment before the call, at once. There is no state file here: the
    reader before this one waited for the agent's next one (every 2 s) and, without it,
    gave up."""
    tmp_path.chmod(0o700)

    async def scenario() -> tuple[OutboxState, OutboxState]:
        async with _open_outbox(tmp_path) as outbox:
            devices = DeviceManager(ProfileSet(), UdevSource())  # not started: not asked
            serving = asyncio.create_task(
                serve_technician_socket(devices, tmp_path, None, _counts(outbox))
            )
            while not (tmp_path / SOCKET_FILE).exists():  # noqa: ASYNC110 - no event for it
                await asyncio.sleep(0.05)
            empty = await asyncio.to_thread(read_current_outbox_state, tmp_path)
            await outbox.put("evaluation", {"n": 1}, priority_class=TX)
            one = await asyncio.to_thread(read_current_outbox_state, tmp_path)
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
        return empty, one

    empty, one = asyncio.run(scenario())
    assert (empty.source, empty.empty) == ("agent", True)
    assert (one.source, one.waiting, one.empty) == ("agent", 1, False)
    assert not (tmp_path / STATE_FILE).exists()


@pytest.mark.timeout(60)
def test_without_the_socket_a_state_file_written_after_the_call_counts(tmp_path: Path) -> None:
    """No technician socket (it failed to start): the reader takes the agent's state
    file, but only one written after the call began (the agent writes it every
    ``STATE_EVERY_S``), so the case put before the call is counted."""
    tmp_path.chmod(0o700)

    async def scenario() -> OutboxState:
        async with _open_outbox(tmp_path) as outbox:
            writer = asyncio.create_task(publish_outbox_state(tmp_path, _counts(outbox)))
            while not (tmp_path / STATE_FILE).exists():  # noqa: ASYNC110 - no event for it
                await asyncio.sleep(0.05)
            await outbox.put("evaluation", {"n": 1}, priority_class=TX)
            state = await asyncio.to_thread(read_current_outbox_state, tmp_path)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        return state

    state = asyncio.run(scenario())
    assert (state.source, state.waiting) == ("agent", 1)
