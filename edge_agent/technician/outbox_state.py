"""What the outbox still holds, for a technician or a decommission.

A stopped agent's outbox is read from its SQLite file, read-only: only counts (no key,
nothing decrypted; ``mode=ro``). A running agent holds the file in SQLite's exclusive
locking mode, so the command asks the agent instead, over its technician socket
(``GET /outbox``: the counts at that moment). When the socket does not answer (it
failed to start), the agent's state file ``DATA_DIR/outbox-state.json`` is read: the
agent rewrites it every ``STATE_EVERY_S`` (``publish_outbox_state``), and a file too old
to be the running agent's is refused. Every 10 s, not 2 s as before: the rewrite woke
an idle agent (issue 17), and the socket answers the commands at once anyway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from edge_agent.technician.socket_client import ask_agent

log = logging.getLogger(__name__)

OUTBOX_FILE: Final = "outbox.db"
STATE_FILE: Final = "outbox-state.json"
STATE_EVERY_S: Final = 10.0
# A state file older than this is not the running agent's word (it died, or hangs).
STATE_STALE_S: Final = 30.0


class OutboxUnreadable(RuntimeError):
    """The outbox file exists but cannot be read as one."""


@dataclass(frozen=True, slots=True)
class OutboxState:
    """What the outbox still holds."""

    exists: bool
    waiting: int  # entries not yet acknowledged by the fleet: transactions, chunks, events
    dead_letters: int  # refused for good; kept in the file, reported to the fleet
    oldest_age_s: float | None
    source: str = "file"  # "file": the database itself; "agent": the running agent's word

    @property
    def empty(self) -> bool:
        """Nothing left to send: the outlet may be decommissioned."""
        return self.waiting == 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "empty": self.empty}


def read_outbox_state(data_dir: Path, *, now_ms: int) -> OutboxState:
    """The state of ``data_dir``'s outbox (an absent file: empty, ``exists`` false); from
    the running agent (its socket, else its state file) while the database is locked by
    it."""
    try:
        return _read_database(data_dir, now_ms=now_ms)
    except OutboxUnreadable as exc:
        if "locked" not in str(exc):
            raise
    answer = _ask_agent(data_dir)
    if answer is not None:
        return answer
    return _read_agent_state(data_dir, now_ms=now_ms)[0]


def read_current_outbox_state(data_dir: Path) -> OutboxState:
    """Like ``read_outbox_state``, but from the running agent only its word given after
    this call began: whatever the outbox took before the call is counted (a decommission
    must not pass on a state from before a clerk's last case). The socket's answer is
    such; a state file must have been written after the call began (up to
    ``STATE_EVERY_S`` to wait for it)."""
    began = time.time()
    deadline = time.monotonic() + 3 * STATE_EVERY_S + 1
    while True:
        now_ms = int(time.time() * 1000)
        try:
            return _read_database(data_dir, now_ms=now_ms)
        except OutboxUnreadable as exc:
            if "locked" not in str(exc):
                raise
        answer = _ask_agent(data_dir)
        if answer is not None:
            return answer
        state, written_at = _read_agent_state(data_dir, now_ms=now_ms)
        if written_at > began:
            return state
        if time.monotonic() > deadline:
            raise OutboxUnreadable("the running agent wrote no new outbox state in time")
        time.sleep(0.2)


def _ask_agent(data_dir: Path) -> OutboxState | None:
    """The running agent's outbox counts over its technician socket; ``None`` when no
    agent answers there (no socket, a refused or broken answer)."""
    import httpx

    try:
        counts = ask_agent(data_dir, "/outbox", timeout_s=10)
        return OutboxState(
            exists=True, waiting=int(counts["waiting"]),
            dead_letters=int(counts["dead_letters"]), oldest_age_s=counts["oldest_age_s"],
            source="agent",
        )  # fmt: skip
    except (RuntimeError, httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        log.info("the agent's technician socket gave no outbox state: %s", exc)
        return None


def _read_agent_state(data_dir: Path, *, now_ms: int) -> tuple[OutboxState, float]:
    path = data_dir / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        age_s = now_ms / 1000 - float(state["written_at"])
        found = OutboxState(
            exists=True, waiting=int(state["waiting"]), dead_letters=int(state["dead_letters"]),
            oldest_age_s=state.get("oldest_age_s"), source="agent",
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutboxUnreadable(
            f"the outbox is in use and the agent's state file {path} is unreadable: {exc}"
        ) from None
    if age_s > STATE_STALE_S:
        raise OutboxUnreadable(
            f"the outbox is in use but the agent's state file is {age_s:.0f} s old: "
            "the agent is not running normally"
        )
    return found, float(state["written_at"])


def _read_database(data_dir: Path, *, now_ms: int) -> OutboxState:
    path = data_dir / OUTBOX_FILE
    if not path.exists():
        return OutboxState(exists=False, waiting=0, dead_letters=0, oldest_age_s=None)
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.2)
    except sqlite3.Error as exc:
        raise OutboxUnreadable(f"cannot open {path}: {exc}") from None
    try:
        waiting, oldest = conn.execute("SELECT COUNT(*), MIN(created_ms) FROM entries").fetchone()
        (dead,) = conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()
    except sqlite3.Error as exc:
        raise OutboxUnreadable(f"{path} is not a readable outbox: {exc}") from None
    finally:
        conn.close()
    age = None if oldest is None else max(0.0, (now_ms - int(oldest)) / 1000)
    return OutboxState(exists=True, waiting=int(waiting), dead_letters=int(dead), oldest_age_s=age)


def _write_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    os.replace(tmp, path)


async def publish_outbox_state(
    data_dir: Path, read: Callable[[], Awaitable[tuple[int, int, float | None]]]
) -> None:
    """Write the running agent's outbox counts (``read``: waiting, dead letters, oldest
    age) to the state file every ``STATE_EVERY_S`` until cancelled; removed at the end."""
    path = data_dir / STATE_FILE
    try:
        while True:
            try:
                waiting, dead, oldest = await read()
                state = {"waiting": waiting, "dead_letters": dead, "oldest_age_s": oldest,
                         "written_at": time.time(), "pid": os.getpid()}  # fmt: skip
                await asyncio.to_thread(_write_state, path, state)
            except Exception as exc:  # a full disk must not stop the agent; the file ages
                log.warning("outbox state file not written: %s", exc)
            await asyncio.sleep(STATE_EVERY_S)
    finally:
        path.unlink(missing_ok=True)
