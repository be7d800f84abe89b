"""好差评 through the local API: the test plays the citizen on the pad simulator."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.local_api.harness import outlet

REQUEST = {
    "window": "3",
    "case_number": "330106202405010001",
    "staff_id": "S007",
    "item_code": "330100-001-XK",
    "item_name": "社会保障卡申领",
    "timeout_s": 30,
}


def test_rating_is_returned_and_recorded_in_the_outbox(tmp_path: Path) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o:
            call = asyncio.create_task(
                o.client.post("/v1/evaluations", headers=o.auth, json=REQUEST)
            )
            shown = await o.pad.wait_for_request(within=5)
            assert shown["window"] == "3"
            assert shown["case_no"] == REQUEST["case_number"]
            assert not call.done()  # the request waits for the citizen
            o.pad.press(5, tags=["attitude"], text="很好")
            response = await asyncio.wait_for(call, timeout=10)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["status"] == "rated"
            assert body["stars"] == 5
            assert body["satisfaction"] == "非常满意"
            assert body["is_bad"] is False
            assert body["tags"] == ["attitude"]
            entry = await o.runtime.outbox.read(body["tx_id"])
            assert entry is not None
            assert entry.meta.tx_kind == "evaluation"
            assert entry.body["stars"] == 5
            assert entry.body["case_number"] == REQUEST["case_number"]
            status = await o.client.get(f"/v1/transactions/{body['tx_id']}", headers=o.auth)
            assert status.json()["status"] == "waiting"

    asyncio.run(main())


def test_walk_away_is_200_timed_out_and_records_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o:
            before = (await o.runtime.outbox.stats()).depth
            call = asyncio.create_task(
                o.client.post("/v1/evaluations", headers=o.auth, json=REQUEST)
            )
            await o.pad.wait_for_request(within=5)
            o.pad.walk_away()
            response = await asyncio.wait_for(call, timeout=10)
            assert response.status_code == 200
            body = response.json()
            assert body["status"] == "timed_out"
            assert body["tx_id"] is None
            assert (await o.runtime.outbox.stats()).depth == before

    asyncio.run(main())


def test_bad_case_number_is_refused_before_the_pad_shows_anything(tmp_path: Path) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o:
            response = await o.client.post(
                "/v1/evaluations", headers=o.auth, json={**REQUEST, "case_number": "办件 1"}
            )
            assert response.status_code == 422
            assert o.pad.requests == []

    asyncio.run(main())
