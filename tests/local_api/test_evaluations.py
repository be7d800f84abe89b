"""好差评 through the local API: the test plays the citizen on the pad simulator."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx

from tests.local_api.harness import Outlet, outlet

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


# ---- Idempotency-Key: a retry never asks the citizen twice ---------------------------

KEY = "eval-case-0001-try"


async def _evaluations(o: Outlet) -> list[str]:
    """The tx_ids of the evaluation entries in the outbox (nothing is sent in these tests)."""
    return [
        e.meta.tx_id
        for e in await o.runtime.outbox.next_batch(1000)
        if e.meta.tx_kind == "evaluation"
    ]


async def _rated(o: Outlet, key: str, body: dict[str, object] = REQUEST) -> dict[str, object]:
    call = asyncio.create_task(
        o.client.post("/v1/evaluations", headers={**o.auth, "Idempotency-Key": key}, json=body)
    )
    await o.pad.wait_for_request(within=5)
    o.pad.press(4, tags=["attitude"], text="还行")
    response = await asyncio.wait_for(call, timeout=10)
    assert response.status_code == 200, response.text
    answer: dict[str, object] = response.json()
    assert answer["status"] == "rated"
    return answer


def test_retry_after_the_rating_returns_the_recorded_answer(tmp_path: Path) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o:
            first = await _rated(o, KEY)
            assert first["tx_id"] == KEY  # the key becomes the transaction id
            assert first["replayed"] is False
            # the retry (timeout_s may differ: how long to wait is not what is rated)
            retry = await o.client.post(
                "/v1/evaluations",
                headers={**o.auth, "Idempotency-Key": KEY},
                json={**REQUEST, "timeout_s": 45},
            )
            assert retry.status_code == 200, retry.text
            assert retry.json() == {**first, "replayed": True}
            assert len(o.pad.requests) == 1  # the pad was not asked again
            assert await _evaluations(o) == [KEY]

    asyncio.run(main())


def test_retry_while_the_pad_waits_joins_the_first_request(tmp_path: Path) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o:
            headers = {**o.auth, "Idempotency-Key": KEY}
            first = asyncio.create_task(
                o.client.post("/v1/evaluations", headers=headers, json=REQUEST)
            )
            await o.pad.wait_for_request(within=5)
            retry = asyncio.create_task(
                o.client.post("/v1/evaluations", headers=headers, json=REQUEST)
            )
            # a different case under the same key is refused at once, the wait goes on
            other = await o.client.post(
                "/v1/evaluations", headers=headers, json={**REQUEST, "case_number": "C-2"}
            )
            assert other.status_code == 409
            assert other.json()["error"] == "idempotency_conflict"
            assert not first.done()
            assert not retry.done()
            o.pad.press(5)
            answers = [r.json() for r in await asyncio.wait_for(asyncio.gather(first, retry), 10)]
            assert answers[0] == answers[1]
            assert answers[0]["tx_id"] == KEY
            assert answers[0]["stars"] == 5
            assert len(o.pad.requests) == 1
            assert await _evaluations(o) == [KEY]

    asyncio.run(main())


def test_a_cut_connection_does_not_lose_the_rating_and_the_retry_gets_it(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o:
            headers = {**o.auth, "Idempotency-Key": KEY}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{o.port}") as cut:
                call = asyncio.create_task(
                    cut.post("/v1/evaluations", headers=headers, json=REQUEST)
                )
                await o.pad.wait_for_request(within=5)
                call.cancel()  # the clerk app's connection is cut while the citizen rates
                with contextlib.suppress(asyncio.CancelledError):
                    await call
            o.pad.press(2, tags=["等候时间长"])
            async with asyncio.timeout(10):  # recorded although nobody is listening
                while await o.runtime.outbox.receipt(KEY) is None:  # noqa: ASYNC110 - deadline
                    await asyncio.sleep(0.05)
            retry = await o.client.post("/v1/evaluations", headers=headers, json=REQUEST)
            assert retry.status_code == 200, retry.text
            answer = retry.json()
            assert answer["replayed"] is True
            assert (answer["tx_id"], answer["stars"]) == (KEY, 2)
            assert len(o.pad.requests) == 1
            assert await _evaluations(o) == [KEY]

    asyncio.run(main())


def test_same_key_with_another_request_is_409_and_changes_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o:
            await _rated(o, KEY)
            for changed in ({"case_number": "330106202405019999"}, {"staff_id": "S008"}):
                response = await o.client.post(
                    "/v1/evaluations",
                    headers={**o.auth, "Idempotency-Key": KEY},
                    json={**REQUEST, **changed},
                )
                assert response.status_code == 409
                assert response.json()["error"] == "idempotency_conflict"
                assert KEY in response.json()["message"]
            assert len(o.pad.requests) == 1
            assert await _evaluations(o) == [KEY]

    asyncio.run(main())


def test_a_walk_away_releases_the_key_and_the_retry_asks_again(tmp_path: Path) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o:
            headers = {**o.auth, "Idempotency-Key": KEY}
            call = asyncio.create_task(
                o.client.post("/v1/evaluations", headers=headers, json=REQUEST)
            )
            await o.pad.wait_for_request(within=5)
            o.pad.walk_away()
            assert (await asyncio.wait_for(call, 10)).json()["status"] == "timed_out"
            assert await _evaluations(o) == []
            answer = await _rated(o, KEY)  # nothing was recorded: the citizen is asked again
            assert answer["tx_id"] == KEY
            assert len(o.pad.requests) == 2
            assert await _evaluations(o) == [KEY]

    asyncio.run(main())


def test_a_submission_key_is_not_reused_for_an_evaluation(tmp_path: Path) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o:
            case = {
                "item_code": "330100-001-XK",
                "region_code": "330106",
                "applicant": {"name": "张三", "id_number": "11010519491231002X"},
                "materials": [],
                "window": "3",
                "clerk": "S007",
            }
            headers = {**o.auth, "Idempotency-Key": KEY}
            filed = await o.client.post("/v1/submissions", headers=headers, json=case)
            assert filed.status_code == 202, filed.text
            response = await o.client.post("/v1/evaluations", headers=headers, json=REQUEST)
            assert response.status_code == 409
            assert response.json()["error"] == "idempotency_conflict"
            assert o.pad.requests == []

    asyncio.run(main())


def test_openapi_documents_the_key_for_evaluations_and_submissions(tmp_path: Path) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o:
            spec = (await o.client.get("/openapi.json", headers=o.auth)).json()
            for path in ("/v1/evaluations", "/v1/submissions"):
                post = spec["paths"][path]["post"]
                header = next(p for p in post["parameters"] if p["name"] == "Idempotency-Key")
                assert header["in"] == "header"
                assert header["schema"]["anyOf"][0]["pattern"] == r"^[A-Za-z0-9_-]{8,64}$"
                conflict = post["responses"]["409"]["content"]["application/json"]["examples"]
                assert conflict["idempotency_conflict"]["value"]["error"] == (
                    "idempotency_conflict"
                )
            answer = spec["components"]["schemas"]["EvaluationPublic"]
            assert any(example.get("replayed") for example in answer["examples"])

    asyncio.run(main())
