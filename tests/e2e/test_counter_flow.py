"""The whole counter flow, as a clerk's app drives it, from the hardware to upstream and back.

Real parts: a Mosquitto broker, a ``fleet-server`` process (SQLite, delivery worker,
catalogue), an HTTP upstream on loopback that records what it accepts and checks the
HMAC signature (``govedge_testbed.upstream``), and an edge agent with ``simulate=True``:
every device is a simulator speaking its real protocol, attached through the real
discovery, profiles and drivers. The agent runs in this process so the test can play
the citizen on the simulated pad; the clerk app is played over real HTTP and a real
WebSocket on the agent's local API.

Ticket → call → ID card → document capture → submission with that capture as its
material → the case number (办件编号) returned by upstream reaches the clerk app as a
``transaction.result`` WebSocket event → the clerk asks for an evaluation of that case,
the citizen rates on the pad → upstream holds the submission (its material's bytes and
sha256 matching the capture) and the evaluation, each exactly once.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from edge_agent.daemon import Agent
from edge_agent.local_api import WS_SUBPROTOCOL, AppRegistry
from edge_agent.simulate import SimulatedHardware
from fleet_server.transactions.identity import upstream_idempotency_key
from govedge_testbed import Mosquitto
from govedge_testbed.upstream import Upstream
from govedge_wire.config import EvaluationConfig
from tests.server.helpers import FleetServer
from tests.server.txkit import delivering_fleet, upstream
from tests.simulated_agent import simulated_agent

__all__ = ["delivering_fleet", "upstream"]  # fixtures used by the test below

WINDOW = "1"
# The technician's [[queue_windows]] table for this outlet: window 1 serves 综合业务 and
# has the simulated pad and LED screen 1 (``edge_agent.simulate`` device ids).
QUEUE_WINDOWS = [
    {
        "window": WINDOW,
        "business_types": ["general"],
        "pad": "sim-window-1-pad",
        "led": "sim-window-led",
    }
]
REGION = "330902"  # routed to the "zhoushan" target by the test catalogue
FORM = b"%PDF-1.4 application form\n" + bytes(range(256)) * 1800  # about 450 KiB


class Clerk:
    """The clerk's app: bearer token, HTTP client, and the events WebSocket."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token
        self.http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=90,
        )
        self.events: list[dict[str, Any]] = []
        self._socket: ClientConnection | None = None

    async def open_events(self) -> None:
        self._socket = await connect(
            f"ws://127.0.0.1:{self.port}/v1/events",
            subprotocols=[Subprotocol(WS_SUBPROTOCOL), Subprotocol(f"bearer.{self.token}")],
            proxy=None,
            open_timeout=10,
        )

    async def wait_event(self, name: str, *, within: float, **data: Any) -> dict[str, Any]:
        """The first event ``name`` whose data has ``data``, kept in ``events``."""
        assert self._socket is not None
        async with asyncio.timeout(within):
            for seen in self.events:
                if _matches(seen, name, data):
                    return seen
            while True:
                event: dict[str, Any] = json.loads(await self._socket.recv())
                self.events.append(event)
                if _matches(event, name, data):
                    return event

    async def post(self, path: str, body: dict[str, Any], **headers: str) -> dict[str, Any]:
        response = await self.http.post(path, json=body, headers=headers)
        assert response.is_success, (path, response.status_code, response.text)
        answer: dict[str, Any] = response.json()
        return answer

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        await self.http.aclose()


def _matches(event: dict[str, Any], name: str, data: dict[str, Any]) -> bool:
    found = event.get("data") or {}
    return event.get("name") == name and all(found.get(k) == v for k, v in data.items())


def _register_app(data_dir: Path) -> tuple[object, str]:
    """``edge-agent apps add counter-web``: a token for a non-browser client."""
    data_dir.mkdir()
    return AppRegistry(data_dir).add("counter-web", origins=[])


@asynccontextmanager
async def simulated_outlet(
    broker: Mosquitto, outlet_id: str, data_dir: Path
) -> AsyncIterator[tuple[Agent, SimulatedHardware, Clerk]]:
    """The agent with every simulator, its local API on a free port, a registered app."""
    _, token = await asyncio.to_thread(_register_app, data_dir)
    async with simulated_agent(broker.url, outlet_id, data_dir, QUEUE_WINDOWS) as (
        agent,
        simulation,
        port,
    ):
        clerk = Clerk(port, token)
        try:
            yield agent, simulation, clerk
        finally:
            await clerk.close()


async def _devices_ready(clerk: Clerk, kinds: set[str]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        response = await clerk.http.get("/v1/devices")
        body = response.json()
        devices: list[dict[str, Any]] = body["devices"] if isinstance(body, dict) else body
        ready = {d["kind"] for d in devices if d.get("state") == "ready"}
        if kinds <= ready:
            return devices
        if time.monotonic() > deadline:
            raise AssertionError(f"devices not ready: {devices}")
        await asyncio.sleep(0.2)


def test_counter_flow_from_ticket_to_case_number_and_evaluation_upstream(
    broker: Mosquitto,
    delivering_fleet: FleetServer,
    upstream: Upstream,
    outlet_id: str,
    tmp_path: Path,
) -> None:
    async def scenario() -> dict[str, Any]:
        async with simulated_outlet(broker, outlet_id, tmp_path / "agent") as (agent, sim, clerk):
            # The agent applied the configured window at start.
            assert agent.assembled is not None
            assert agent.assembled.runtime.windows[WINDOW].pad == "sim-window-1-pad"
            queue = (await clerk.http.get("/v1/queue")).json()
            assert [(w["window"], w["business_types"]) for w in queue["windows"]] == [
                (WINDOW, ["general"])
            ]
            await _devices_ready(
                clerk,
                {"id_card_reader", "document_camera", "evaluation_pad", "ticket_printer",
                 "led_screen"},
            )  # fmt: skip
            await clerk.open_events()
            # A citizen takes a ticket; the clerk at window 1 calls it.
            ticket = await clerk.post("/v1/tickets", {"business_type": "general"})
            called = await clerk.post(f"/v1/windows/{WINDOW}/call", {})
            assert called["ticket"]["number"] == ticket["number"]
            assert called["led"] == {"lines": [f"请{ticket['number']}号到1号窗口", "等候人数:000"],
                                     "shown": True}  # fmt: skip
            led = sim.simulator("led_screen")
            assert led is not None
            assert led.text(1, 1) == f"请{ticket['number']}号到1号窗口"
            # The ID card, then the papers on the document camera.
            card = await clerk.post("/v1/id-card/read", {})
            doc = await clerk.post("/v1/documents/capture", {})
            capture = base64.b64decode(doc["jpeg_base64"])
            # The case, with the capture as its material.
            case = {
                "item_code": "000101",
                "region_code": REGION,
                "applicant": {"name": card["name"], "id_number": card["id_number"]},
                "materials": [
                    {"name": "身份证复印件", "document_id": doc["document_id"]},
                    # A file the clerk app uploads: several outbox chunks (180 KiB each).
                    {
                        "name": "申请表",
                        "data_base64": base64.b64encode(FORM).decode(),
                        "content_type": "application/pdf",
                        "pages": 3,
                    },
                ],
                "window": WINDOW,
                "clerk": "S007",
            }
            filed = await clerk.post(
                "/v1/submissions", case, **{"Idempotency-Key": "counter-flow-case-0001"}
            )
            assert filed["status"] == "accepted"
            tx_id = filed["tx_id"]
            # Upstream's 办件编号 comes back to the clerk app on the WebSocket.
            result = await clerk.wait_event("transaction.result", within=60, tx_id=tx_id)
            case_number = result["data"]["case_number"]
            assert result["data"]["outcome"] == "delivered"
            # The clerk asks for a rating of that case; the citizen presses 5 stars.
            asked = asyncio.create_task(
                clerk.post(
                    "/v1/evaluations",
                    {
                        "window": WINDOW,
                        "case_number": case_number,
                        "staff_id": "S007",
                        "item_code": "000101",
                        "timeout_s": 30,
                    },
                )
            )
            pad = sim.simulator("evaluation_pad")
            assert pad is not None
            shown = await pad.wait_for_request(within=20)
            assert shown["case_no"] == case_number  # what the pad shows the citizen
            pad.press(5, tags=["态度好"])
            rated = await asked
            assert rated["status"] == "rated"
            assert rated["stars"] == 5
            evaluated = await clerk.wait_event(
                "transaction.result", within=60, tx_id=rated["tx_id"]
            )
            assert evaluated["data"]["outcome"] == "delivered"
            status = (await clerk.http.get(f"/v1/transactions/{tx_id}")).json()
            assert len(pad.requests) == 1  # one request shown, rated once
            return {
                "tx_id": tx_id,
                "case_number": case_number,
                "capture": capture,
                "card": card,
                "ticket": ticket,
                "evaluation_tx": rated["tx_id"],
                "status": status,
                "events": clerk.events,
            }

    seen = asyncio.run(scenario())
    tx_id, capture = seen["tx_id"], seen["capture"]
    # Upstream holds the submission once, with its material, and the evaluation once,
    # each under its province-wide key {outlet_id}:{tx_id}.
    key = f"{outlet_id}:{tx_id}"
    assert upstream.accepted_count[key] == 1
    sent = upstream.accepted[key]
    assert sent["target"] == "zhoushan"
    assert sent["case_number"] == seen["case_number"]
    body = sent["body"]
    assert body["tx_kind"] == "submission"
    assert body["body"]["applicant"]["id_number"] == seen["card"]["id_number"]
    scan, form = body["materials"]
    assert [m["name"] for m in body["materials"]] == ["身份证复印件", "申请表"]
    files = sent["files"]  # the multipart's material parts, in the document's order
    for material, part, original in zip((scan, form), files, (capture, FORM), strict=True):
        assert part["ref"] == material["ref"]
        assert part["data"] == original
        assert material["sha256"] == hashlib.sha256(original).hexdigest()
        assert material["size"] == len(original)
    assert upstream.bad_materials == 0
    assert [m["ref"] for m in body["body"]["materials"]] == [scan["ref"], form["ref"]]
    evaluation_key = f"{outlet_id}:{seen['evaluation_tx']}"
    assert upstream.accepted_count[evaluation_key] == 1
    assert upstream.by_target["hcp"] == [evaluation_key]
    rating = upstream.accepted[evaluation_key]["body"]["body"]
    assert rating["case_number"] == seen["case_number"]
    assert rating["window"] == WINDOW
    assert upstream.by_target["zhoushan"] == [key]
    assert upstream.bad_signatures == 0
    # The clerk app sees the case delivered, with the case number, in its status too.
    assert seen["status"]["status"] == "delivered"
    assert seen["status"]["case_number"] == seen["case_number"]
    # No event carried the citizen's name or ID number.
    dumped = json.dumps(seen["events"], ensure_ascii=False)
    assert seen["card"]["id_number"] not in dumped
    assert seen["card"]["name"] not in dumped


# After the default rating reached upstream and the agent heard it was delivered: long
# enough for many of the server's delivery rounds (0.1 s apart here) and the agent's
# outbox resends, so a second delivery of it would arrive within it.
SETTLE_S = 5.0


def test_a_walk_away_at_the_pad_reaches_upstream_as_one_default_rating(
    broker: Mosquitto,
    delivering_fleet: FleetServer,
    upstream: Upstream,
    outlet_id: str,
    tmp_path: Path,
) -> None:
    """系统默认评价: the pad times out, the region records a default, counted apart.

    The test waits for the delivery upstream itself (not for the fleet's statistics,
    which count the rating when it is received), then for the agent to learn it was
    delivered, then lets the agent and the server run on: a duplicate in that time
    fails the test.
    """
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        async with simulated_outlet(broker, outlet_id, tmp_path / "agent") as (agent, sim, clerk):
            assert agent.assembled is not None
            live = agent.assembled.runtime.live
            assert live is not None
            # The region's profile, as a fleet config's evaluation part sets it.
            live.evaluation = EvaluationConfig(
                level_coding="gbt39046", default_channels=("4",), default_stars=5
            )
            await _devices_ready(clerk, {"evaluation_pad"})
            asked = asyncio.create_task(
                clerk.post(
                    "/v1/evaluations",
                    {"window": WINDOW, "case_number": "CASE-0042", "staff_id": "S007",
                     "timeout_s": 30},
                )
            )  # fmt: skip
            pad = sim.simulator("evaluation_pad")
            assert pad is not None
            await pad.wait_for_request(within=20)
            pad.walk_away()
            answer = await asked
            assert answer["status"] == "timed_out"
            tx_id = answer["default_rating"]["tx_id"]
            seen["key"] = upstream_idempotency_key(outlet_id, tx_id)
            async with asyncio.timeout(60):
                while seen["key"] not in upstream.accepted:  # noqa: ASYNC110 - upstream is polled
                    await asyncio.sleep(0.2)
                while True:  # the server's result reaches the agent: nothing left to send
                    status = (await clerk.http.get(f"/v1/transactions/{tx_id}")).json()
                    if status["status"] == "delivered":
                        break
                    await asyncio.sleep(0.2)
            await asyncio.sleep(SETTLE_S)  # the agent and the server run on

    asyncio.run(scenario())
    key = seen["key"]
    # Upstream holds it once, marked as the system's, in the outlet's coding (1 = 非常满意),
    # and was asked once: no second delivery, not even one it refused as a duplicate.
    assert upstream.by_target["hcp"] == [key]
    assert key.startswith(f"{outlet_id}:default-")
    assert upstream.accepted_count[key] == 1
    assert upstream.received[key] == 1
    rating = upstream.accepted[key]["body"]["body"]
    assert rating["system_default"] is True
    assert (rating["level_code"], rating["channel"]) == (1, "4")
    assert rating["case_number"] == "CASE-0042"
    stats = delivering_fleet.get(f"/api/v1/evaluations/stats?outlet={outlet_id}")
    assert (stats["evaluations"], stats["default_evaluations"]) == (1, 1)
    assert stats["active_evaluations"] == 0
