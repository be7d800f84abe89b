"""The JavaScript client's event stream, run by node, comes back after the agent does.

A real outlet (simulators, queue, uvicorn) serves the local API; node runs the shipped
``govedge-local.js`` and follows ``events()``. The test closes the agent's server (what
an agent restart does to every open connection), then serves the API again on the same
port: the client must say it is reconnecting, open the stream again by itself, and
deliver the events that follow. Node 20 has ``WebSocket`` behind
``--experimental-websocket`` (a browser has it always; the hall pages' Chromium test
covers the same path in a page).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import missing
from tests.local_api.harness import Outlet, outlet

CLIENT = Path(__file__).parents[2] / "edge_agent" / "local_api" / "client" / "govedge-local.js"


def _script(base_url: str, token: str) -> str:
    """Print each state change and each event as one JSON line."""
    return (
        f"import {{ GovedgeLocal }} from {json.dumps(CLIENT.as_uri())};\n"
        f"const api = new GovedgeLocal({{ baseUrl: {json.dumps(base_url)}, "
        f"token: {json.dumps(token)} }});\n"
        "const say = (x) => console.log(JSON.stringify(x));\n"
        "api.events((e) => { if (e.type === 'event') say({ event: e.name, data: e.data }); },\n"
        "  { onState: (state) => say({ state }), maxDelayMs: 1000 });\n"
    )


class NodeLines:
    """The node process's stdout, one JSON object a line, read until a wanted one."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.seen: list[dict[str, Any]] = []

    async def until(self, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        assert self.process.stdout is not None
        while True:
            line = await self.process.stdout.readline()
            if not line:
                assert self.process.stderr is not None
                error = await self.process.stderr.read()
                raise AssertionError(f"node ended: {error.decode(errors='replace')}")
            message: dict[str, Any] = json.loads(line)
            self.seen.append(message)
            if wanted(message):
                return message


def _state(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m.get("state") == name


def _ticket(number: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m.get("event") == "ticket.issued" and m["data"]["ticket"] == number


def test_events_reconnect_after_the_agent_restarts_and_deliver_again(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        missing("node (Debian package nodejs)")

    async def take_ticket(o: Outlet) -> None:
        taken = await o.client.post("/v1/tickets", headers=o.auth, json={"business_type": "social"})
        assert taken.status_code == 201, taken.text

    async def main() -> None:
        async with outlet(tmp_path) as o:
            process = await asyncio.create_subprocess_exec(
                node,
                "--experimental-websocket",
                "--no-warnings",
                "--input-type=module",
                "-e",
                _script(f"http://127.0.0.1:{o.port}", o.token),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            lines = NodeLines(process)
            try:
                async with asyncio.timeout(60):
                    await lines.until(_state("open"))
                    await take_ticket(o)
                    await lines.until(_ticket("A001"))

                    await o.stop_api()  # the agent goes away: every connection drops
                    await lines.until(_state("reconnecting"))
                    await o.start_api()  # and comes back on its port
                    await lines.until(_state("open"))
                    await take_ticket(o)
                    await lines.until(_ticket("A002"))
            finally:
                if process.returncode is None:
                    process.kill()
                await process.wait()
            states = [m["state"] for m in lines.seen if "state" in m]
            assert states[0] == "open"
            assert states[-1] == "open"
            assert "reconnecting" in states
            assert "closed" not in states  # only close() ends the stream
            tickets = [m["data"]["ticket"] for m in lines.seen if "event" in m]
            assert tickets == ["A001", "A002"]

    asyncio.run(main())
