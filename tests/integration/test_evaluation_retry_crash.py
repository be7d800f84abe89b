"""An evaluation the clerk app never got an answer for: agent SIGKILLed, restarted, retried.

Real parts: ``edge-agent run`` as a child process (its own local API on loopback, its
pad driver talking to a real ``EvaluationPadSimulator`` over TCP), a real Mosquitto,
and a plain paho client playing the fleet server (``FakeServer``: records every
transaction, acks each). The clerk app posts ``POST /v1/evaluations`` with an
``Idempotency-Key`` and its connection is cut while the citizen rates, so the answer
never reaches it (deterministic: the request is cancelled once the pad shows it). The
citizen rates; as soon as the agent has recorded the rating (``GET
/v1/transactions/{key}`` knows it: the tracker runs after the outbox's commit) the
agent is SIGKILLed. Restarted on the same data directory, the retry with the same key
answers the recorded rating (same ``tx_id``) without asking the pad again, and the
"server" holds exactly one evaluation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from edge_agent.devices.evaluation_pad.simulator import EvaluationPadSimulator
from govedge_testbed import Mosquitto
from tests.chaos.harness import PAD_PROFILE, Outlet
from tests.e2e.conftest import Agent
from tests.integration.fake_server import FakeServer, wait_until

KEY = "crash-eval-0001"
PAD = "crash-pad"
REQUEST = {
    "window": "3",
    "case_number": "330106202411230001",
    "staff_id": "S007",
    "item_code": "330100-001-XK",
    "timeout_s": 60,
}


async def _pad_ready(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    async with asyncio.timeout(30):
        while True:
            response = await client.get(f"/v1/devices/{PAD}", headers=headers)
            if response.status_code == 200 and response.json().get("state") == "ready":
                return
            await asyncio.sleep(0.1)


async def _recorded(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    async with asyncio.timeout(30):
        while True:
            response = await client.get(f"/v1/transactions/{KEY}", headers=headers)
            if response.status_code == 200:
                return
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def _started(outlet: Outlet) -> AsyncIterator[httpx.AsyncClient]:
    """Start the agent; a client of its local API once its pad is ready."""
    await asyncio.to_thread(outlet.start)  # blocks until the agent announced its port
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{outlet.port}", timeout=30) as client:
        await _pad_ready(client, {"Authorization": f"Bearer {outlet.token}"})
        yield client


def test_retry_after_a_sigkill_returns_the_recorded_rating_once(
    broker: Mosquitto, outlet_id: str, tmp_path: Path
) -> None:
    server = FakeServer(port=broker.port, outlet_id=outlet_id)

    async def main() -> None:
        async with EvaluationPadSimulator(transport="tcp", serial="CRASH0001") as pad:
            config = tmp_path / "agent.toml"
            config.write_text(
                f'[[devices]]\nprofile = "{PAD_PROFILE}"\n'
                f'address = "{pad.address}"\ndevice_id = "{PAD}"\n'
            )
            agent = Agent(
                outlet_id=outlet_id,
                data_dir=tmp_path / "agent",
                mqtt_url=broker.url,
                log=tmp_path / "agent.log",
                extra=["--config", str(config), "--log-level", "INFO",
                       "--reconnect-base", "0.2", "--reconnect-cap", "1"],
            )  # fmt: skip
            outlet = Outlet(agent=agent)
            outlet.register_app()
            headers = {"Authorization": f"Bearer {outlet.token}", "Idempotency-Key": KEY}
            try:
                async with _started(outlet) as client:
                    call = asyncio.create_task(
                        client.post("/v1/evaluations", headers=headers, json=REQUEST)
                    )
                    await pad.wait_for_request(within=10)
                    call.cancel()  # the clerk app's connection is cut: it gets no answer
                    with contextlib.suppress(asyncio.CancelledError):
                        await call
                    pad.press(1, tags=["等候时间长"], text="太慢")
                    await _recorded(client, headers)  # outbox entry + receipt committed
                outlet.kill()  # SIGKILL, as a power cut would

                async with _started(outlet) as client:  # same data directory
                    retry = await client.post("/v1/evaluations", headers=headers, json=REQUEST)
                    assert retry.status_code == 200, retry.text
                    answer = retry.json()
                    assert answer["status"] == "rated"
                    assert answer["replayed"] is True
                    assert (answer["tx_id"], answer["stars"]) == (KEY, 1)
                    assert answer["text"] == "太慢"
                    # a changed request under the same key is refused after the restart too
                    other = await client.post(
                        "/v1/evaluations",
                        headers=headers,
                        json={**REQUEST, "case_number": "330106202411239999"},
                    )
                    assert other.status_code == 409
                    assert other.json()["error"] == "idempotency_conflict"
                assert len(pad.requests) == 1  # the citizen was asked once
            finally:
                outlet.agent.stop()

    try:
        asyncio.run(main())
        wait_until(lambda: KEY in server.tx_ids(), timeout=30, what="the evaluation upstream")
        evaluations = {m.tx_id for m in server.received if m.tx_kind == "evaluation"}
        assert evaluations == {KEY}  # resends carry the same tx_id: deduplicated by it
    finally:
        server.close()
