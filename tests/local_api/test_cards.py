"""Reading ID cards through the local API, end to end through the SAM simulator on a pty."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from edge_agent.devices.id_card_reader.cards import make_card
from edge_agent.devices.id_card_reader.text import CardType
from tests.local_api.harness import READER, Outlet, outlet

Scenario = Callable[[Outlet], Awaitable[None]]


def run(tmp_path: Path, scenario: Scenario) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o:
            async with asyncio.timeout(30):
                await scenario(o)

    asyncio.run(main())


def test_read_id_card_end_to_end_and_nothing_personal_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    card = make_card(CardType.RESIDENT, seed=7, long_term=True)
    caplog.set_level(logging.DEBUG)

    async def scenario(o: Outlet) -> None:
        o.id_card.place_card(card)
        response = await o.client.post("/v1/id-card/read", headers=o.auth)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["device_id"] == READER
        assert body["name"] == card.name
        assert body["id_number"] == card.id_number
        assert body["address"] == card.address
        assert body["birth_date"] == card.birth_date.isoformat()
        assert body["valid_to"] is None
        assert body["long_term"] is True
        assert base64.b64decode(body["photo_wlt_base64"]) == card.photo.ljust(1024, b"\0")[:1024]

    run(tmp_path, scenario)
    logged = caplog.text
    assert card.name not in logged
    assert card.id_number not in logged
    assert card.id_number[6:14] not in logged  # not even the birth date part
    assert card.address is not None
    assert card.address not in logged


def test_extra_addresses_come_as_a_list_and_as_the_old_joined_string(tmp_path: Path) -> None:
    extra = ("浙江省杭州市滨江区江南大道1号", "浙江省宁波市鄞州区天童南路8号")

    async def scenario(o: Outlet) -> None:
        o.id_card.place_card(make_card(extra_addresses=extra))
        response = await o.client.post(
            "/v1/id-card/read", headers=o.auth, json={"extra_address": True}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["extra_addresses"] == list(extra)
        assert body["extra_address"] == "\uff1b".join(extra)
        response = await o.client.post("/v1/id-card/read", headers=o.auth, json={})
        assert (response.json()["extra_addresses"], response.json()["extra_address"]) == ([], None)
        spec = (await o.client.get("/openapi.json", headers=o.auth)).json()
        fields = spec["components"]["schemas"]["IdCardPublic"]["properties"]
        assert fields["extra_addresses"]["type"] == "array"
        assert "U+FF1B" in fields["extra_address"]["description"]

    run(tmp_path, scenario)


def test_no_card_is_no_card_with_a_hint(tmp_path: Path) -> None:
    async def scenario(o: Outlet) -> None:
        response = await o.client.post("/v1/id-card/read", headers=o.auth, json={})
        assert response.status_code == 409
        body = response.json()
        assert body["error"] == "no_card"
        assert "place the ID card" in body["hint"]

    run(tmp_path, scenario)


def test_reader_unplugged_is_a_clear_error(tmp_path: Path) -> None:
    async def scenario(o: Outlet) -> None:
        o.id_card.place_card(make_card())
        o.id_card.unplug()  # the port vanishes under the driver
        response = await o.client.post("/v1/id-card/read", headers=o.auth)
        assert response.status_code == 503
        body = response.json()
        assert body["error"] == "device_unavailable"
        assert "plug" in body["hint"]
        # udev then reports the removal: no reader at all any more.
        o.source.remove(next(iter(await o.source.scan())))
        await o.runtime.devices.wait_for_state(READER, "offline", timeout_s=5)
        response = await o.client.post("/v1/id-card/read", headers=o.auth)
        assert response.status_code == 503
        assert response.json()["error"] == "no_device"
        assert "ID-card reader" in response.json()["message"]

    run(tmp_path, scenario)


def test_unknown_device_id_is_404(tmp_path: Path) -> None:
    async def scenario(o: Outlet) -> None:
        response = await o.client.post(
            "/v1/id-card/read", headers=o.auth, json={"device_id": "nope"}
        )
        assert response.status_code == 404
        assert response.json()["error"] == "unknown_device"
        response = await o.client.post(
            "/v1/id-card/read", headers=o.auth, json={"device_id": "printer-1"}
        )
        assert response.status_code == 409
        assert response.json()["error"] == "wrong_device_kind"

    run(tmp_path, scenario)
