"""The agent's embedded uvicorn (local API, technician socket) idles quietly (issue 17).

Plain uvicorn wakes ten times a second per server to refresh its Date header; the agent
runs two, which was most of its idle CPU. ``EmbeddedServer`` does not tick at all: the
Date header is made when a response needs it and a stop request wakes the server at
once. Real uvicorn on a loopback port, real HTTP requests.
"""

from __future__ import annotations

import asyncio
import time
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest
import uvicorn

from edge_agent.embedded_server import EmbeddedServer


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


class _CountingServer(EmbeddedServer):
    ticks = 0

    async def on_tick(self, counter: int) -> bool:
        self.ticks += 1
        return await super().on_tick(counter)


def _config() -> uvicorn.Config:
    return uvicorn.Config(
        _hello, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off"
    )


async def _started(server: EmbeddedServer) -> tuple[asyncio.Task[None], int]:
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the server did not start"
        await asyncio.sleep(0.02)
    port = int(server.servers[0].sockets[0].getsockname()[1])
    return task, port


@pytest.mark.timeout(30)
def test_an_idle_server_does_not_tick_and_its_date_header_stays_current() -> None:
    """Idle for 2.5 s, the server's loop did not wake (the previous one-second tick woke
    it twice or three times, plain uvicorn 25 times), and a response after the idle time
    carries the current date, not the one of the start."""

    async def main() -> tuple[int, list[tuple[float, float]]]:
        server = _CountingServer(_config())
        task, port = await _started(server)
        dates: list[tuple[float, float]] = []
        async with httpx.AsyncClient() as client:
            for pause in (0.0, 2.5):
                await asyncio.sleep(pause)
                answer = await client.get(f"http://127.0.0.1:{port}/")
                sent = parsedate_to_datetime(answer.headers["date"]).timestamp()
                dates.append((sent, time.time()))
        ticks = server.ticks
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        return ticks, dates

    ticks, dates = asyncio.run(main())
    assert ticks == 0
    for sent, received in dates:
        assert received - 2 <= sent <= received  # the Date header has whole seconds
    assert dates[1][0] > dates[0][0]


def test_it_answers_with_a_date_header_and_stops_on_request() -> None:
    async def main() -> tuple[httpx.Response, bool]:
        server = EmbeddedServer(_config())
        task, port = await _started(server)
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"http://127.0.0.1:{port}/")
        server.should_exit = True
        done, _ = await asyncio.wait([task], timeout=10)
        return answer, task in done

    answer, stopped = asyncio.run(main())
    assert answer.status_code == 200
    assert answer.text == "hello"
    assert "date" in answer.headers
    assert stopped
