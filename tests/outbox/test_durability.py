"""A process killed with SIGKILL loses nothing it reported as accepted, and doubles nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from .helpers import make_outbox

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import asyncio, sys
from edge_agent.outbox import Outbox, PriorityClass

async def main(directory, start):
    outbox = Outbox(f"{directory}/outbox.db", key_path=f"{directory}/outbox.key",
                    quota_bytes=10**9)
    async with outbox:
        n = int(start)
        while True:
            stored = await outbox.put("evaluation", {"n": n, "id_number": "330102199001011234"},
                                      priority_class=PriorityClass.TRANSACTION)
            print("accepted", stored.tx_id, n, flush=True)
            n += 1

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _run_and_kill(directory: Path, *, start: int, kill_after: int) -> dict[str, int]:
    """Start a putting child, SIGKILL it right after its ``kill_after``-th "accepted"."""
    env = os.environ | {"PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory), str(start)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    accepted: dict[str, int] = {}
    try:
        for line in child.stdout:
            _, tx_id, n = line.split()
            accepted[tx_id] = int(n)
            if len(accepted) == kill_after:
                os.kill(child.pid, signal.SIGKILL)
                break
    finally:
        child.kill()
        rest, _ = child.communicate(timeout=30)
    for line in rest.splitlines():  # printed before the kill landed: accepted as well
        _, tx_id, n = line.split()
        accepted[tx_id] = int(n)
    assert child.returncode == -signal.SIGKILL
    return accepted


def test_every_accepted_put_survives_sigkill_exactly_once(tmp_path: Path) -> None:
    accepted = _run_and_kill(tmp_path, start=0, kill_after=40)
    accepted |= _run_and_kill(tmp_path, start=10_000, kill_after=15)

    async def reopen() -> list[tuple[str, int]]:
        async with make_outbox(tmp_path) as outbox:
            return [(e.tx_id, int(str(e.body["n"]))) for e in await outbox.next_batch(10_000)]

    stored = asyncio.run(reopen())
    ids = [tx_id for tx_id, _ in stored]
    assert len(ids) == len(set(ids)), "an entry was stored twice"
    found = dict(stored)
    missing = set(accepted) - set(found)
    assert not missing, f"{len(missing)} accepted transactions lost"
    assert all(found[tx_id] == n for tx_id, n in accepted.items())
    # FIFO survives the crashes too: both runs' entries in put order.
    numbers = [n for _, n in stored]
    assert numbers == sorted(numbers)
