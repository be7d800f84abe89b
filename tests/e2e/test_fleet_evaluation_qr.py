"""End to end: the province's 好差评 QR page, set in the fleet's config, printed on a ticket.

A real ``fleet-server`` (SQLite, its config-signing key from the real CLI) holds the
region's ``evaluation.qr_url``; the edge agent (in this process, every device simulated,
trusting that key through ``config_keys_file``) receives the signed config over the
real broker, applies it, and prints the next ticket with the QR code of that page. The
printer simulator decodes the QR data from the ESC/POS bytes (``GS ( k``), as a
citizen's phone would read it from the paper. The agent has no local template, so only
the fleet's can have put it there.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx

from edge_agent.local_api import AppRegistry
from govedge_testbed import Mosquitto
from tests.e2e.conftest import poll, start_server, stop_process
from tests.e2e.test_config_rollout import _all_in_sync, _put, _signing_key
from tests.simulated_agent import simulated_agent

OUTLET = "qr-hz-1"
PROFILE = {"outlet_id": OUTLET, "name": "西湖区网点", "kind": "township", "region_code": "330106"}
PROVINCE = "https://hcp.province.example/rate?bh={case_number}&wd={outlet}"
WINDOWS = [{"window": "1", "business_types": ["general"]}]


def test_the_regions_qr_page_from_the_fleet_is_printed_on_the_next_ticket(
    private_broker: Mosquitto, tmp_path: Path
) -> None:
    key, keys_file = _signing_key(tmp_path)
    server = start_server(
        private_broker.url, f"sqlite:///{tmp_path / 'fleet.db'}", tmp_path / "server.log",
        env={"GOVEDGE_CONFIG_SIGNING_KEY": str(key)},
    )  # fmt: skip
    data_dir = tmp_path / "agent"
    data_dir.mkdir()
    _, token = AppRegistry(data_dir).add("counter-web", origins=[])
    try:
        httpx.put(
            f"{server.url}/api/v1/outlet-profiles", json=[PROFILE], timeout=10,
            headers=server.headers,
        ).raise_for_status()  # fmt: skip
        _put(server, "region:3301", {"evaluation": {"qr_url": PROVINCE}}, version=0)

        async def scenario() -> tuple[dict[str, object], list[str]]:
            async with (
                simulated_agent(
                    private_broker.url, OUTLET, data_dir, WINDOWS, config_keys_file=keys_file
                ) as (_, simulation, port),
                httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                ) as api,
            ):
                in_sync = _all_in_sync(server, {OUTLET: 1})
                await asyncio.to_thread(poll, in_sync, timeout=60, interval=0.5)
                taken = await api.post("/v1/tickets", json={"business_type": "general"})
                assert taken.status_code == 201, taken.text
                printer = simulation.simulator("ticket_printer")
                assert printer is not None
                return taken.json(), list(printer.qr_codes)

        ticket, printed = asyncio.run(scenario())
    finally:
        stop_process(server.proc)
    assert ticket["printed"] is True
    assert printed == [ticket["evaluation_url"]]  # one QR code: the answer's link
    link = urlsplit(printed[0])
    assert (link.scheme, link.netloc, link.path) == ("https", "hcp.province.example", "/rate")
    fields = parse_qs(link.query)
    today = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y%m%d")
    assert fields["bh"] == [f"T{today}-{ticket['number']}"]
    assert fields["wd"] == [OUTLET]
