"""An outlet whose session file was lost or restored from an older copy comes back by itself.

Real parts: the ``fleet-server`` process (SQLite), a private Mosquitto, ``edge-agent``
processes with their own data directory. Before the session resync, an agent whose
counter was behind the server's known session had every message refused
(``stale_session``/``session_mismatch``) and the outlet stayed offline for good.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import BIN, Agent, Server, poll

LOCAL_API = re.compile(r"local API on http://127\.0\.0\.1:(\d+)")
ID_NUMBER = "33010619900101123X"


def _restart(agent: Agent) -> int:
    """Stop (cleanly) and start again; returns the new local API port."""
    agent.stop()
    offset = agent.log.stat().st_size if agent.log.exists() else 0
    agent.start()

    def announced() -> int | None:
        assert agent.proc is not None
        assert agent.proc.poll() is None, agent.log.read_text(errors="replace")[-3000:]
        with agent.log.open("rb") as log:
            log.seek(offset)
            found = LOCAL_API.search(log.read().decode(errors="replace"))
        return int(found.group(1)) if found else None

    port: int = poll(announced, timeout=60)
    return port


def _register_app(data_dir: Path) -> str:
    result = subprocess.run(
        [str(BIN / "edge-agent"), "apps", "add", "clerk", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def _submit(port: int, token: str, key: str) -> None:
    body = {
        "item_code": "000101",
        "region_code": "330902",
        "applicant": {"name": "张三丰", "id_number": ID_NUMBER},
        "window": "W3",
        "clerk": "clerk-7",
    }
    response = httpx.post(
        f"http://127.0.0.1:{port}/v1/submissions",
        json=body,
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
        timeout=10,
    )
    assert response.status_code == httpx.codes.ACCEPTED, response.text


def _online_in(server: Server, outlet_id: str, *, above: int) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        row = server.outlet(outlet_id)
        if row and row["state"] == "online" and row["session"] > above:
            return row
        return None

    found: dict[str, Any] = poll(check, timeout=30)
    return found


def _comes_back(
    server: Server, agent: Agent, *, known: int, token: str, key: str, resyncs: int
) -> None:
    """The outlet is online above ``known``; its telemetry and a new case are accepted."""
    port = _restart(agent)
    row = _online_in(server, agent.outlet_id, above=known)
    assert row["session"] == known + 1
    seen = row["last_seen"]
    poll(lambda: (server.outlet(agent.outlet_id) or {}).get("last_seen", seen) > seen, timeout=10)
    accepted = server.stats()["noted"].get("tx_accepted", 0)
    _submit(port, token, key)
    poll(lambda: server.stats()["noted"].get("tx_accepted", 0) == accepted + 1, timeout=30)
    stats = server.stats()
    assert stats["noted"]["session_resync_requested"] == resyncs
    assert stats["rejected"]["stale_session"] >= resyncs
    # Visible on the outlet's page: the agent reports what happened.
    health = httpx.get(
        f"{server.url}/api/v1/outlets/{agent.outlet_id}/health", headers=server.headers, timeout=5
    ).json()
    events = [e for e in health["events"] if e["name"] == "session.resynced"]
    assert len(events) == resyncs
    assert events[0]["data"]["known_session"] == known
    assert events[0]["data"]["session"] == known + 1
    assert "reconnecting with session" in agent.log.read_text(errors="replace")


def _first_run(server: Server, agent: Agent, *, session_file: str | None) -> str:
    """Register the clerk app, run once (one case accepted), stop; returns the app token.

    ``session_file`` stands for the reconnects of a long-running agent (each one raises
    the counter), without spending a process start on each.
    """
    agent.data_dir.mkdir(parents=True, exist_ok=True)
    token = _register_app(agent.data_dir)
    if session_file is not None:
        (agent.data_dir / "session").write_text(session_file)
    port = _restart(agent)
    _online_in(server, agent.outlet_id, above=-1)
    accepted = server.stats()["noted"].get("tx_accepted", 0)
    _submit(port, token, f"case-first-{agent.outlet_id}")
    poll(lambda: server.stats()["noted"].get("tx_accepted", 0) == accepted + 1, timeout=30)
    agent.stop()
    return token


def test_wiped_data_dir_comes_back_online(
    server: Server, make_agent: Callable[[str], Agent]
) -> None:
    agent = make_agent("reinstalled-01")
    _first_run(server, agent, session_file="5\n")  # the server knows session 6
    # A reinstalled PC: the data directory is gone (outbox empty), the counter back at 0.
    shutil.rmtree(agent.data_dir)
    agent.data_dir.mkdir()
    token = _register_app(agent.data_dir)
    _comes_back(server, agent, known=6, token=token, key="case-after-wipe", resyncs=1)


def test_older_copy_of_the_data_dir_comes_back_online(
    server: Server, make_agent: Callable[[str], Agent], tmp_path: Path
) -> None:
    agent = make_agent("restored-01")
    token = _first_run(server, agent, session_file=None)
    backup = tmp_path / "backup"
    shutil.copytree(agent.data_dir, backup)  # session 0, outbox drained
    # The PC goes on working (reconnects raise the counter), then its disk is restored.
    (agent.data_dir / "session").write_text("5\n")
    _restart(agent)
    _online_in(server, agent.outlet_id, above=5)
    agent.stop()
    shutil.rmtree(agent.data_dir)
    shutil.copytree(backup, agent.data_dir)
    _comes_back(server, agent, known=6, token=token, key="case-restored", resyncs=1)
