"""``WS /v1/events`` over a real WebSocket: uvicorn on a loopback port, ``websockets`` client."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from edge_agent.devices import DeviceEvent
from edge_agent.devices.id_card_reader.cards import make_card
from edge_agent.local_api import WS_SUBPROTOCOL, LocalApiOptions
from tests.local_api.harness import FOREIGN, READER, outlet, wait_for_event


def test_handshake_refuses_a_foreign_origin_and_a_missing_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge_agent.local_api")

    async def main() -> None:
        async with outlet(tmp_path) as o, asyncio.timeout(30):
            with pytest.raises(InvalidStatus) as foreign:
                async with o.events_socket(origin=FOREIGN):
                    pass
            assert foreign.value.response.status_code == 403
            with pytest.raises(InvalidStatus) as anonymous:
                async with o.events_socket(token=""):
                    pass
            assert anonymous.value.response.status_code == 403
            with pytest.raises(InvalidStatus) as wrong:
                async with o.events_socket(token="gva_not-a-token"):
                    pass
            assert wrong.value.response.status_code == 403
            async with o.events_socket() as ws:  # the allowed origin and the token
                assert ws.subprotocol == WS_SUBPROTOCOL
            async with o.events_socket(origin=None) as ws:  # a non-browser client
                assert ws.subprotocol == WS_SUBPROTOCOL

    asyncio.run(main())
    refusals = [r.getMessage() for r in caplog.records if "refused websocket" in r.getMessage()]
    assert len(refusals) == 3
    assert any("(bad_origin)" in m for m in refusals)
    assert any("(missing_token)" in m for m in refusals)
    assert any("(bad_token)" in m for m in refusals)


def test_card_read_rating_and_transaction_result_arrive(tmp_path: Path) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o, asyncio.timeout(30), o.events_socket() as ws:
            card = make_card(seed=3)
            o.id_card.place_card(card)
            assert (await o.client.post("/v1/id-card/read", headers=o.auth)).status_code == 200
            read = await wait_for_event(ws, "card.read")
            assert read["type"] == "event"
            assert read["device_id"] == READER
            assert read["data"]["id_number"].count("*") == 10
            assert card.id_number not in str(read)
            assert card.name not in str(read)

            call = asyncio.create_task(
                o.client.post(
                    "/v1/evaluations",
                    headers=o.auth,
                    json={"window": "3", "case_number": "C1", "staff_id": "S1"},
                )
            )
            await o.pad.wait_for_request(within=5)
            o.pad.press(1, text="太慢了")
            rating = await wait_for_event(ws, "rating.given")
            assert rating["data"]["stars"] == 1
            assert rating["data"]["is_bad"] is True
            assert rating["severity"] == "warning"
            assert "太慢了" not in str(rating)
            await asyncio.wait_for(call, timeout=10)

            o.runtime.transactions.publish(
                "transaction.result", tx_id="case-1", outcome="delivered", case_number="N1"
            )
            result = await wait_for_event(ws, "transaction.result")
            assert result["device_id"] == "outbox"
            assert result["data"] == {"tx_id": "case-1", "outcome": "delivered",
                                      "case_number": "N1"}  # fmt: skip

    asyncio.run(main())


def test_device_and_transaction_events_share_one_stream_and_count_drops(tmp_path: Path) -> None:
    options = LocalApiOptions(ws_queue_size=2)

    async def main() -> None:
        async with (
            outlet(tmp_path, options=options) as o,
            asyncio.timeout(30),
            o.events_socket() as ws,
        ):
            # The server subscribes right after the handshake: publish until one arrives,
            # then flush what else was queued (one hub keeps its order).
            for attempt in itertools.count():
                o.runtime.transactions.publish("transaction.result", tx_id=f"warm-up-{attempt}")
                with contextlib.suppress(TimeoutError):
                    await wait_for_event(ws, "transaction.result", timeout_s=0.5)
                    break
            o.runtime.transactions.publish("transaction.flushed", tx_id="flush")
            await wait_for_event(ws, "transaction.flushed")

            # No await in between: the client's queues (2 each) overflow before it runs.
            o.runtime.events.publish(DeviceEvent(device_id="test-device", name="test.event"))
            for n in range(5):
                o.runtime.transactions.publish("transaction.result", tx_id=f"case-{n}")
            got = [json.loads(await ws.recv()) for _ in range(3)]
            assert {m["name"] for m in got} == {"test.event", "transaction.result"}
            results = [m for m in got if m["name"] == "transaction.result"]
            assert [m["data"]["tx_id"] for m in results] == ["case-3", "case-4"]
            assert {m["device_id"] for m in results} == {"outbox"}
            assert sum(m.get("dropped", 0) for m in got) == 3

    asyncio.run(main())
