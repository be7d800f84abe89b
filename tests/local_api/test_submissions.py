"""Submissions: validated, durably in the outbox before 202, idempotent by key, 507 when full."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest

from edge_agent.local_api.state import STATE_FILE, LocalStateStore
from edge_agent.local_api.tracker import TransactionTracker
from edge_agent.outbox import Outbox, PriorityClass
from edge_agent.transaction_events import TRANSACTION_EVENTS_SOURCE
from govedge_wire.pii import make_id_number
from tests.local_api.harness import Outlet, outlet

ID_NUMBER = make_id_number("330106", "19900101", 123)


def submission(**extra: Any) -> dict[str, Any]:
    return {
        "item_code": "330100-001-XK",
        "region_code": "330106",
        "applicant": {"name": "张三丰", "id_number": ID_NUMBER},
        "window": "3",
        "clerk": "S007",
        **extra,
    }


async def submissions_in_outbox(o: Outlet) -> list[str]:
    batch = await o.runtime.outbox.next_batch(1000)
    return [e.tx_id for e in batch if e.meta.tx_kind == "submission"]


def test_submission_is_accepted_once_even_when_posted_twice(tmp_path: Path) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o:
            headers = {**o.auth, "Idempotency-Key": "case-2024-05-01-0001"}
            first = await o.client.post("/v1/submissions", headers=headers, json=submission())
            assert first.status_code == 202, first.text
            assert first.json() == {"tx_id": "case-2024-05-01-0001", "status": "accepted",
                                    "materials": 0}  # fmt: skip
            second = await o.client.post("/v1/submissions", headers=headers, json=submission())
            assert second.status_code == 202
            assert second.json()["tx_id"] == "case-2024-05-01-0001"
            assert await submissions_in_outbox(o) == ["case-2024-05-01-0001"]
            entry = await o.runtime.outbox.read("case-2024-05-01-0001")
            assert entry is not None
            assert entry.body["applicant"] == {
                "name": "张三丰", "id_number": ID_NUMBER, "id_type": "111", "kind": 1
            }  # fmt: skip

    asyncio.run(main())


def test_materials_are_stored_once_and_the_case_waits_for_them(tmp_path: Path) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o:
            scan = base64.b64encode(b"\xff\xd8fake-jpeg\xff\xd9" * 100).decode()
            body = submission(materials=[{"name": "身份证复印件", "data_base64": scan}])
            headers = {**o.auth, "Idempotency-Key": "case-with-material-1"}
            for _ in range(2):
                response = await o.client.post("/v1/submissions", headers=headers, json=body)
                assert response.status_code == 202
                assert response.json()["materials"] == 1
            entry = await o.runtime.outbox.read("case-with-material-1")
            assert entry is not None
            ref = entry.body["materials"][0]["ref"]  # type: ignore[index,call-overload]
            progress = await o.runtime.outbox.material_progress(str(ref))
            assert progress is not None
            assert progress.size == 1300
            assert await submissions_in_outbox(o) == []  # not due before its material is acked
            missing = submission(materials=[{"name": "x", "document_id": "doc-gone"}])
            response = await o.client.post("/v1/submissions", headers=o.auth, json=missing)
            assert response.status_code == 422
            assert response.json()["error"] == "unknown_document"

    asyncio.run(main())


def test_invalid_submission_is_422_without_echoing_personal_data(tmp_path: Path) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o:
            wrong = ID_NUMBER[:17] + ("0" if ID_NUMBER[17] != "0" else "1")
            body = submission(applicant={"name": "张三丰", "id_number": wrong})
            response = await o.client.post("/v1/submissions", headers=o.auth, json=body)
            assert response.status_code == 422
            assert response.json()["error"] == "invalid_request"
            assert "check digit" in response.json()["message"]
            assert wrong not in response.text
            assert "张三丰" not in response.text
            assert await submissions_in_outbox(o) == []
            bad_key = {**o.auth, "Idempotency-Key": "no spaces allowed"}
            response = await o.client.post("/v1/submissions", headers=bad_key, json=submission())
            assert response.status_code == 422

    asyncio.run(main())


def test_a_misplaced_personal_key_is_not_echoed_but_a_typo_is_named(tmp_path: Path) -> None:
    """An app that puts an ID number or a name where a field name goes (a key) gets its
    422 without it: the location shows ``*`` there. An ordinary misspelt field is still
    named, so the developer sees the typo."""

    async def main() -> None:
        async with outlet(tmp_path) as o:
            applicant = {"name": "张三丰", "id_number": ID_NUMBER, ID_NUMBER: "x"}
            body = submission(applicant=applicant, 李四="代办", nmae="typo")
            response = await o.client.post("/v1/submissions", headers=o.auth, json=body)
            assert response.status_code == 422
            assert ID_NUMBER not in response.text
            assert "李四" not in response.text
            assert "张三丰" not in response.text
            locations = [d["loc"] for d in response.json()["details"]]
            assert ["body", "applicant", "*"] in locations
            assert ["body", "*"] in locations
            assert ["body", "nmae"] in locations
            assert await submissions_in_outbox(o) == []

    asyncio.run(main())


@pytest.mark.parametrize("media", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_a_json_body_sent_as_another_type_is_told_to_say_json(
    tmp_path: Path, media: str | None
) -> None:
    """What curl -d or a fetch() without headers sends: the answer names the header."""

    async def main() -> None:
        async with outlet(tmp_path) as o:
            headers = {**o.auth, **({"Content-Type": media} if media else {})}
            body = json.dumps(submission()).encode()
            response = await o.client.post("/v1/submissions", headers=headers, content=body)
            assert response.status_code == 422
            answer = response.json()
            assert answer["error"] == "invalid_request"
            assert "Content-Type: application/json" in answer["hint"]
            assert f"this request's: {media or 'none'}" in answer["hint"]
            assert await submissions_in_outbox(o) == []

    asyncio.run(main())


def test_outbox_full_is_507_with_the_outbox_sentence(tmp_path: Path) -> None:
    async def main() -> None:
        async with outlet(tmp_path, quota_bytes=8 * 1024) as o:
            scan = base64.b64encode(bytes(range(256)) * 64).decode()  # 16 KiB > quota
            body = submission(materials=[{"name": "scan", "data_base64": scan}])
            response = await o.client.post("/v1/submissions", headers=o.auth, json=body)
            assert response.status_code == 507
            assert response.json()["error"] == "outbox_full"
            assert response.json()["message"].startswith("outbox full:")
            assert "nothing accepted was lost" in response.json()["message"]

    asyncio.run(main())


async def _status_becomes(o: Outlet, url: str, status: str) -> dict[str, Any]:
    """The transaction's body once the tracker has applied the event (within 5 s)."""
    async with asyncio.timeout(5):
        while True:
            body: dict[str, Any] = (await o.client.get(url, headers=o.auth)).json()
            if body["status"] == status:
                return body
            await asyncio.sleep(0.02)  # polls the HTTP API: nothing to wait on


def test_transaction_status_follows_ack_and_result_events(tmp_path: Path) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o:
            headers = {**o.auth, "Idempotency-Key": "case-status-0001"}
            await o.client.post("/v1/submissions", headers=headers, json=submission())
            url = "/v1/transactions/case-status-0001"
            assert (await o.client.get(url, headers=o.auth)).json()["status"] == "waiting"
            await o.runtime.outbox.ack("case-status-0001")
            o.runtime.transactions.publish(
                "transaction.acked", tx_id="case-status-0001", status="accepted"
            )
            await _status_becomes(o, url, "acked")
            o.runtime.transactions.publish(
                "transaction.result",
                tx_id="case-status-0001",
                outcome="delivered",
                case_number="330106240501000123",
            )
            body = await _status_becomes(o, url, "delivered")
            assert body["case_number"] == "330106240501000123"
            unknown = await o.client.get("/v1/transactions/never-seen-1", headers=o.auth)
            assert unknown.status_code == 404
            assert unknown.json()["error"] == "unknown_transaction"
            assert TRANSACTION_EVENTS_SOURCE == "outbox"

    asyncio.run(main())


def test_idempotency_key_is_bound_to_the_body(tmp_path: Path) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o:
            headers = {**o.auth, "Idempotency-Key": "case-bound-0001"}
            first = await o.client.post("/v1/submissions", headers=headers, json=submission())
            assert first.status_code == 202, first.text
            # Same body, other key order and an explicit null: the same canonical body.
            same = dict(reversed(list(submission(note=None).items())))
            again = await o.client.post("/v1/submissions", headers=headers, json=same)
            assert again.status_code == 202, again.text
            assert again.json()["tx_id"] == "case-bound-0001"
            changed = await o.client.post(
                "/v1/submissions", headers=headers, json=submission(window="5")
            )
            assert changed.status_code == 409
            assert changed.json()["error"] == "idempotency_conflict"
            assert "new Idempotency-Key" in changed.json()["hint"]
            assert ID_NUMBER not in changed.text
            entry = await o.runtime.outbox.read("case-bound-0001")
            assert entry is not None
            assert entry.body["window"] == "3"  # the first body, untouched
            assert await submissions_in_outbox(o) == ["case-bound-0001"]

    asyncio.run(main())


def test_a_refused_request_does_not_bind_its_key(tmp_path: Path) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o:
            headers = {**o.auth, "Idempotency-Key": "case-fixed-0001"}
            gone = submission(materials=[{"name": "scan", "document_id": "doc-expired"}])
            refused = await o.client.post("/v1/submissions", headers=headers, json=gone)
            assert refused.status_code == 422
            assert refused.json()["error"] == "unknown_document"
            fixed = await o.client.post("/v1/submissions", headers=headers, json=submission())
            assert fixed.status_code == 202, fixed.text
            assert fixed.json()["tx_id"] == "case-fixed-0001"

    asyncio.run(main())


def test_status_survives_a_restart_and_falls_back_to_the_outbox(tmp_path: Path) -> None:
    async def main() -> None:
        state_path = tmp_path / STATE_FILE
        async with Outbox(
            tmp_path / "outbox.db", key_path=tmp_path / "outbox.key", quota_bytes=1 << 20
        ) as outbox:
            await outbox.put("submission", {"x": 1}, priority_class=PriorityClass.TRANSACTION,
                             tx_id="case-done-0001")  # fmt: skip
            await outbox.put("submission", {"x": 2}, priority_class=PriorityClass.TRANSACTION,
                             tx_id="case-wait-0001")  # fmt: skip
            async with LocalStateStore(state_path) as state:
                tracker = TransactionTracker(outbox, state=state)
                await tracker.accepted("case-done-0001", tx_kind="submission")
                await outbox.ack("case-done-0001")
                await tracker.on_event(
                    "transaction.result",
                    {"tx_id": "case-done-0001", "outcome": "delivered", "case_number": "N42"},
                )
            # The agent restarts: a new store on the same file, a new tracker.
            async with LocalStateStore(state_path) as state:
                tracker = TransactionTracker(outbox, state=state)
                done = await tracker.status("case-done-0001")
                assert (done.status, done.case_number, done.tx_kind) == (
                    "delivered", "N42", "submission"
                )  # fmt: skip
                waiting = await tracker.status("case-wait-0001")  # never in the table
                assert (waiting.status, waiting.tx_kind) == ("waiting", "submission")
                assert (await tracker.status("case-never-001")).status == "unknown"

    asyncio.run(main())


def test_a_burst_of_events_applies_in_order_per_transaction(tmp_path: Path) -> None:
    """Events applied in one write (a draining backlog) end as if applied one by one: a
    result after the ack wins, a late ack does not undo it, other transactions too."""

    async def main() -> None:
        async with (
            Outbox(
                tmp_path / "outbox.db", key_path=tmp_path / "outbox.key", quota_bytes=1 << 20
            ) as outbox,
            LocalStateStore(tmp_path / STATE_FILE) as state,
        ):
            tracker = TransactionTracker(outbox, state=state)
            await tracker.accepted("case-burst-0001", tx_kind="submission")
            await tracker.on_events(
                [
                    ("transaction.acked", {"tx_id": "case-burst-0001", "status": "accepted"}),
                    ("transaction.acked", {"tx_id": "case-burst-0002", "status": "accepted"}),
                    ("transaction.result", {"tx_id": "case-burst-0001",
                                            "outcome": "delivered", "case_number": "N7"}),
                    ("transaction.acked", {"tx_id": "case-burst-0001", "status": "duplicate"}),
                    ("transaction.acked", {"tx_id": "case-burst-0003", "status": "rejected",
                                           "reason": "bad item"}),
                ]
            )  # fmt: skip
            first = await tracker.status("case-burst-0001")
            assert (first.status, first.case_number, first.tx_kind) == (
                "delivered", "N7", "submission"
            )  # fmt: skip
            assert (await tracker.status("case-burst-0002")).status == "acked"
            third = await tracker.status("case-burst-0003")
            assert (third.status, third.reason) == ("rejected", "bad item")

    asyncio.run(main())


def test_unknown_transaction_is_404_with_a_hint(tmp_path: Path) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o:
            unknown = await o.client.get("/v1/transactions/never-seen-2", headers=o.auth)
            assert unknown.status_code == 404
            assert unknown.json()["error"] == "unknown_transaction"
            assert "30 days" in unknown.json()["hint"]

    asyncio.run(main())
