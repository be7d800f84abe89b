"""The technician socket refuses bad bodies clearly and changes nothing.

The real socket (Starlette under uvicorn on a Unix socket in the data dir) over a real
device manager with its retired list on disk; requests go over the socket as
``edge-agent device …`` sends them.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_agent.counters import TELEMETRY_COUNTERS, AgentCounters
from edge_agent.discovery import DeviceManager, UdevSource
from edge_agent.discovery.retired import RetiredDevices
from edge_agent.profiles import ProfileSet
from edge_agent.technician.socket_api import SOCKET_FILE, serve_technician_socket
from govedge_wire.pii import make_id_number

ID_NUMBER = make_id_number("330106", "19900101", 123)


async def _exchange(
    data_dir: Path, calls: list[tuple[str, str, Any]], counters: AgentCounters
) -> list[httpx.Response]:
    devices = DeviceManager(
        ProfileSet(), UdevSource(), retired=RetiredDevices.load_or_broken(data_dir)
    )  # not started: nothing is attached
    serving = asyncio.create_task(serve_technician_socket(devices, data_dir, counters=counters))
    try:
        while not (data_dir / SOCKET_FILE).exists():  # noqa: ASYNC110 - no event for it
            await asyncio.sleep(0.05)
        transport = httpx.AsyncHTTPTransport(uds=str(data_dir / SOCKET_FILE))
        async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
            return [
                await client.request(method, path, content=body)
                if isinstance(body, bytes)
                else await client.request(method, path, json=body)
                for method, path, body in calls
            ]
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)


@pytest.mark.timeout(60)
def test_bad_bodies_are_refused_with_what_is_wrong_and_change_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tmp_path.chmod(0o700)
    counters = AgentCounters()
    calls: list[tuple[str, str, Any]] = [
        ("POST", "/devices/retire", {"key": "x" * 200}),
        ("POST", "/devices/retire", {"key": "printer-1", "forse": True}),
        ("POST", "/devices/retire", b'{"key": '),
        # An ID number where a field name goes: refused without being echoed.
        ("POST", "/devices/retire", {"key": "printer-1", ID_NUMBER: True}),
        ("POST", "/devices/register", {"profile": "nope"}),
        ("POST", "/devices/retire", {"key": "never-seen"}),
        ("GET", "/devices", None),
    ]
    with caplog.at_level(logging.INFO, logger="edge_agent"):
        *refused, unknown, listed = asyncio.run(_exchange(tmp_path, calls, counters))
    for response in refused:
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "invalid_request"
    too_long, misspelt, broken, personal, register = (r.json()["detail"] for r in refused)
    assert too_long.startswith("key: String should have at most 128 characters")
    assert "forse: Extra inputs are not permitted" in misspelt
    assert "Invalid JSON" in broken
    assert personal == "*: Extra inputs are not permitted"
    assert register == "address: Field required; device_id: Field required"
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_device")
    assert listed.json() == {"devices": [], "retired": []}  # nothing was retired
    # Counted, and reported with the agent's telemetry counters; the unknown device
    # (a well-formed request) is not a refused body.
    assert counters.get("technician_refused_invalid_request") == 5
    assert counters.subset()["technician_refused_invalid_request"] == 5
    assert "technician_refused_invalid_request" in TELEMETRY_COUNTERS
    # The log names the route (once a minute each), never what the body held.
    refusals = [line for line in caplog.messages if "refused a body" in line]
    assert len(refusals) == 2
    assert "/devices/retire" in refusals[0]
    assert "/devices/register" in refusals[1]
    assert all("forse" not in line and "xxxx" not in line for line in caplog.messages)
    assert all(ID_NUMBER not in line for line in caplog.messages)
